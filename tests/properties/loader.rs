//! 1. The loader.

use super::*;

/// YAML-ish tokens for text that is close to YAML without being generated from a value.
pub(crate) const YAML_TOKENS: &[&str] = &[
    "- ",
    ": ",
    ":",
    "\n",
    "\r\n",
    "  ",
    "    ",
    "\t",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "&a ",
    "*a",
    "*b",
    "!!str ",
    "!!binary ",
    "!custom ",
    "'",
    "\"",
    "# c",
    "|",
    "|-\n",
    ">",
    "---\n",
    "...\n",
    "? ",
    "%YAML 1.2\n",
    "%TAG ! tag:x,2024:\n",
    "<<: ",
    "id",
    "openai",
    "operations",
    "match",
    "path",
    "/v1/{x}",
    "$.a[*]",
    "stream",
    "fold",
    "null",
    "~",
    "1e400",
    "0x1F",
    ".inf",
    "é",
    "\u{feff}",
    "\u{0}",
];

pub(crate) fn arb_text() -> BoxedStrategy<String> {
    prop_oneof![
        1 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        3 => prop::collection::vec(select(YAML_TOKENS), 0..80).prop_map(|t| t.concat()),
        3 => (arb_json(), 0u8..3).prop_map(|(v, style)| to_yaml(&v, style)),
        2 => (prop::collection::vec((arb_key(), arb_json()), 0..6), 0u8..3).prop_map(|(kv, style)| {
            let mut map: Map<String, Json> = kv.into_iter().collect();
            map.insert("id".into(), json!("x"));
            to_yaml(&Json::Object(map), style)
        }),
    ]
    .boxed()
}

/// Strings put where the specs have JSONPaths, templates, fold targets, routes, regexes and
/// enumerations.
pub(crate) fn arb_spec_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "\\$[a-z0-9_.*?@'\"=<>!()&| ,\\[\\]{}#~-]{0,24}",
        2 => "[a-z_.{}# $\\[\\]0-9-]{0,24}",
        2 => "(\\{[a-z._]{0,10}\\}| |[a-z]{1,5}){0,5}",
        2 => "(/(\\{[a-z_]{0,4}\\}|[a-z:]{0,5}){0,3}){0,4}",
        3 => select(&[
            "$", "$.", "$[", "$..*", "$[?@.a==1]", "$[?(@.type == 'x')]", "$.a[-1]", "$.a[0:2]",
            "$['a']", "$[\"a\"]", "$.*", "$.a.b[*].c", "$[*]", "choices[{$.index}]", "a[#]",
            "a[-1]", "a[99999999999999999999]", "a[{$.b[}]", "a.", ".a", "a..b", "{gen_ai.request.model}",
            "{", "}", "{}", "/v1/{x}/{x}", "/a/{b}{c}", "/{}", "v1", "/a?b=c", "^[", "(?P<x>",
            "(a{1000}){1000}", "sse", "ndjson", "aws_eventstream", "json_array", "base64_json",
            "json_text", "string_array", "parse_json", "int", "openai", "anthropic", "CLIENT",
            "INTERNAL", "histogram", "counter", "POST", "get", "*", "*.x.com", "gpt-4o*",
        ][..])
        .prop_map(str::to_string),
        1 => arb_string(),
    ]
    .boxed()
}

/// Checks the load contract: no panic; an `Err` has diagnostics, each naming one of the given
/// files, at a line and column ≥ 1 within the file, with a message. Returns the catalog when the
/// sources load.
pub(crate) fn check_load(sources: &[Source]) -> Result<Option<Catalog>, TestCaseError> {
    let diags = match Catalog::from_sources(sources) {
        Ok(catalog) => return Ok(Some(catalog)),
        Err(diags) => diags,
    };
    prop_assert!(!diags.is_empty());
    let _ = diags.to_string();
    for d in diags.iter() {
        let source = sources.iter().find(|s| s.name == d.file);
        prop_assert!(
            source.is_some(),
            "diagnostic names a file that was not given: {d:?}"
        );
        prop_assert!(d.line >= 1 && d.col >= 1, "position below 1:1: {d:?}");
        // YAML line breaks: `\n`, `\r\n` and a lone `\r`.
        let lines = source
            .unwrap()
            .text
            .replace("\r\n", "\n")
            .split(['\n', '\r'])
            .count();
        prop_assert!(
            d.line <= lines + 1,
            "line {} beyond the {lines} lines of {}: {d}",
            d.line,
            d.file
        );
        prop_assert!(!d.message.is_empty(), "empty message: {d:?}");
    }
    Ok(None)
}

/// Whether a URL built by `url_of` for this route must match it: plain host and path text.
pub(crate) fn plain_route(provider: &Provider, route: &Route) -> bool {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~:*".contains(&b))
    };
    provider.hosts.iter().all(|h| plain(h))
        && route.template.segments.iter().flatten().all(|p| match p {
            Piece::Literal(text) => plain(text),
            Piece::Capture(_) | Piece::Rest(_) => true,
        })
}

proptest! {
    #![proptest_config(config(4096))]

    /// Arbitrary text, token soup and generated YAML documents.
    #[test]
    fn loader_survives_arbitrary_text(text in arb_text(), name in select(&["providers/x.yaml", "x.yaml", "dir/sub/openai.yml", "weird name.yaml", ""][..])) {
        check_load(&[Source { name: name.to_string(), text }])?;
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Bundled provider specs edited: keys deleted or renamed, types swapped, random strings as
    /// JSONPaths, templates, targets and routes; loaded with `openai.yaml` (which several extend)
    /// and some providers that extend it; emitted as block YAML, pretty JSON or one-line JSON.
    /// When the edited spec still loads, its rules run on arbitrary bodies and streams through
    /// every operation without a panic, and `extract` finds each operation from its URL.
    #[test]
    fn loader_survives_mutated_provider_specs(
        file in select(SPEC_FILES),
        edits in prop::collection::vec(arb_edit(arb_spec_string()), 1..6),
        style in 0u8..3,
        extra in prop::collection::vec(any::<bool>(), 3),
        request in arb_top_json(),
        response in arb_top_json(),
        chunks in prop::collection::vec(arb_chunk(), 0..4),
        host_pick in any::<Index>(),
    ) {
        let mut doc = spec_doc(file);
        for edit in &edits {
            apply_edit(&mut doc, edit);
        }
        let mut sources = vec![Source { name: format!("providers/{file}"), text: to_yaml(&doc, style) }];
        let others = ["openai.yaml", "groq.yaml", "deepseek.yaml", "xai.yaml"];
        for (i, other) in others.iter().enumerate() {
            let wanted = i == 0 || extra[i - 1];
            if wanted && *other != file {
                sources.push(Source { name: format!("providers/{other}"), text: bundled_text(other).to_string() });
            }
        }
        let Some(loaded) = check_load(&sources)? else { return Ok(()) };
        let stem = file.trim_end_matches(".yaml");
        for provider in loaded.providers().iter().filter(|p| &*p.id == stem) {
            for op in &provider.operations {
                for route in &op.routes {
                    let mut exchange = Exchange {
                        method: route.method.clone(),
                        url: url_of(route, &host_of(provider, host_pick), "Q~Q"),
                        status: 200,
                        request: serde_json::to_vec(&request).unwrap(),
                        response: serde_json::to_vec(&response).unwrap(),
                        content_type: Some("application/json".into()),
                        response_headers: vec![],
                    };
                    // Pinned: a spec that lost its hosts shares its routes with its parent,
                    // and `extract` refuses to guess between them.
                    let pinned = ExtractOptions::default().with_provider(Some(provider.id.to_string()));
                    let out = extract_with(&loaded, &exchange, &pinned);
                    // A host shared with another provider (a child spec that lost its own
                    // `upstream`) goes to the base provider, whose routes may not match.
                    let own_host = loaded
                        .provider_for_host(&host_of(provider, host_pick))
                        .is_none_or(|p| p.id == provider.id);
                    if own_host && plain_route(provider, route) {
                        prop_assert!(out.is_ok(), "{} {}: {:?}", exchange.method, exchange.url, out.err());
                    }
                    if let Some(stream) = &op.stream {
                        exchange.response = encode_stream(stream, &chunks);
                        exchange.content_type = Some(content_type_of(stream.framing).into());
                        let _ = extract_with(&loaded, &exchange, &pinned);
                    }
                }
            }
        }
    }
}

/// Bundled dialect files (data-defined attribute renderings).
pub(crate) fn dialect_docs() -> &'static [(String, Json)] {
    static DOCS: OnceLock<Vec<(String, Json)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut docs: Vec<(String, Json)> = std::fs::read_dir("dialects")
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (
                    p.display().to_string(),
                    specter::unstable::yaml::parse(&text).unwrap().value,
                )
            })
            .collect();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(!docs.is_empty());
        docs
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// Dialect files with random edits (key templates such as `a.{i}.{j}.{k}`, swapped types):
    /// parsing never panics, and a dialect that parses renders every recorded exchange.
    #[test]
    fn dialects_survive_mutation(
        pick in any::<Index>(),
        edits in prop::collection::vec(arb_edit(prop_oneof![
            "([a-z._]{0,4}(\\{[ijk]?\\}|\\{|\\})?){0,4}",
            arb_string(),
        ].boxed()), 0..5),
        style in 0u8..3,
        fixture in any::<Index>(),
    ) {
        let (name, doc) = pick.get(dialect_docs());
        let mut doc = doc.clone();
        for edit in &edits {
            apply_edit(&mut doc, edit);
        }
        let Ok(dialect) = Dialect::parse(name, &to_yaml(&doc, style)) else { return Ok(()) };
        let fixture = fixture.get(fixtures());
        let exchange = Exchange {
            method: fixture.method.clone(),
            url: fixture.url.clone(),
            status: fixture.status,
            request: fixture.request.clone(),
            response: fixture.response.clone(),
            content_type: fixture.content_type.clone(),
            response_headers: fixture.response_headers.clone(),
        };
        let options = ExtractOptions::default().with_dialects(vec![Dialect::Semconv, dialect]).with_content(ContentPolicy::default()).with_provider(None);
        run_extract(&exchange, &options, &fixture.provider)?;
    }
}

#[test]
fn unedited_specs_reemitted_as_yaml_still_load() {
    // The emitters used above are faithful: every bundled spec, re-emitted in each style, loads.
    for style in 0..3 {
        let sources: Vec<Source> = specter::unstable::catalog::bundled::PROVIDERS
            .iter()
            .map(|(name, _)| Source {
                name: format!("providers/{name}"),
                text: to_yaml(&spec_doc(name), style),
            })
            .collect();
        if let Err(d) = Catalog::from_sources(&sources) {
            panic!("style {style}: {d}");
        }
    }
}

/// Runs `body` in a child process (this test binary, filtered to `test`), so that a stack
/// overflow, which aborts the process, fails one test instead of killing the run.
pub(crate) fn in_child_process(test: &str, body: impl FnOnce()) {
    if std::env::var_os("SPECTER_PROPERTIES_CHILD").is_some() {
        body();
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SPECTER_PROPERTIES_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{test} failed in its child process ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn deeply_nested_yaml_is_a_diagnostic_not_a_stack_overflow() {
    in_child_process(
        "deeply_nested_yaml_is_a_diagnostic_not_a_stack_overflow",
        || {
            // 4 KB of `- - - - … x`: 2,000 nested block sequences.
            let text = format!("{}x", "- ".repeat(2_000));
            let result = Catalog::from_sources(&[Source {
                name: "deep.yaml".into(),
                text,
            }]);
            let diags = result.expect_err("not a provider");
            assert!(diags.iter().all(|d| d.file == "deep.yaml" && d.line >= 1));
        },
    );
}

#[test]
fn yaml_aliases_cannot_expand_a_small_file_into_a_huge_document() {
    // Five levels of ten aliases each ("billion laughs"); nine levels (463 bytes) would need
    // about 10^9 nodes and tens of GB.
    let mut text = String::from("x0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..5 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("x{i}: &a{i} [{refs}]\n"));
    }
    fn nodes(v: &Json) -> usize {
        1 + match v {
            Json::Array(a) => a.iter().map(nodes).sum(),
            Json::Object(m) => m.values().map(nodes).sum(),
            _ => 0,
        }
    }
    if let Ok(doc) = specter::unstable::yaml::parse(&text) {
        let n = nodes(&doc.value);
        assert!(
            n <= 64 * text.len(),
            "{} bytes of YAML became {n} JSON nodes",
            text.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
