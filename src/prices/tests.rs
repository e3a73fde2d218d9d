#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;

/// The lookup as it is defined: the first entry, in book order, whose provider and model match
/// the lower-cased model.
fn linear(book: &PriceBook, provider: &str, model: &str) -> Option<usize> {
    let model = model.to_lowercase();
    book.entries.iter().position(|e| {
        e.provider.as_deref().is_none_or(|p| p == provider) && e.matcher.matches(&model)
    })
}

/// The position of the entry `find` answers.
fn indexed(book: &PriceBook, provider: &str, model: &str) -> Option<usize> {
    let found = book.find(provider, model)?;
    book.entries.iter().position(|e| std::ptr::eq(e, found))
}

/// Checks `find` against [`linear`]; the number of models that found an entry.
fn agree<'a>(
    book: &PriceBook,
    providers: &[&str],
    models: impl IntoIterator<Item = &'a str>,
) -> usize {
    let mut found = 0;
    for model in models {
        for provider in providers {
            let want = linear(book, provider, model);
            assert_eq!(
                indexed(book, provider, model),
                want,
                "provider {provider:?}, model {model:?}"
            );
            found += usize::from(want.is_some());
        }
    }
    found
}

/// Every literal a rule compares with.
fn literals<'a>(matcher: &'a Matcher, out: &mut Vec<&'a str>) {
    match matcher {
        Matcher::Equals(s)
        | Matcher::StartsWith(s)
        | Matcher::EndsWith(s)
        | Matcher::Contains(s) => out.push(s),
        Matcher::Regex(_) => {}
        Matcher::Or(all) | Matcher::And(all) => all.iter().for_each(|m| literals(m, out)),
        Matcher::Not(m) => literals(m, out),
    }
}

/// A name, its upper-cased and mixed-case forms, and near misses around it.
fn variants(name: &str) -> Vec<String> {
    let mixed: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let mut shorter = name.to_string();
    shorter.pop();
    vec![
        name.to_string(),
        name.to_uppercase(),
        mixed,
        format!("{name}-2024-07-18"),
        format!("x{name}"),
        shorter,
    ]
}

fn providers(book: &PriceBook) -> Vec<String> {
    let mut all: BTreeSet<String> = book
        .entries
        .iter()
        .flat_map(|e| e.provider.clone())
        .collect();
    all.insert("unknown".into());
    all.insert(String::new());
    all.into_iter().collect()
}

const NEAR_MISSES: &[&str] = &[
    "gpt-4o-mini-2024-07-18",
    "GPT-4O-MINI-2024-07-18",
    "GPT-4O",
    "gpt-4o",
    "gpt-4",
    "GPT-4",
    "gpt-4-0613",
    "gpt-4o-2024",
    "ft:gpt-4o-mini-2024-07-18:org::abc",
    "gpt-4o-mini-2024-07-18.ft-abc",
    "gpt-5-nano-2025-08-07",
    "gpt-5.6-luna-2026-01-02",
    "GPT-5.6-LUNA-2026-01-02",
    "gpt-5.6-luna-2026-1-02",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "us.amazon.nova-pro-v1:0",
    "claude-3-5-haiku@20241022",
    "models/gemini-2.0-flash",
    "unknown",
    "",
    " ",
    "*",
    "GPT-4Ö",
    "İ",
    "ǅ",
];

/// The model names the recorded exchanges under `tests/fixtures` carry, with the provider
/// directory each was found in.
fn fixture_models() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let json = regex::Regex::new(r#""model"\s*:\s*"([^"\\]+)""#).unwrap();
    let yaml = regex::Regex::new(r#"(?m)^\s*model:\s*"?([^"\s#]+)"#).unwrap();
    let mut found = BTreeSet::new();
    let mut stack: Vec<PathBuf> = vec![root.clone()];
    let mut visited = 0;
    while let Some(dir) = stack.pop() {
        visited += 1;
        assert!(visited < 10_000, "too many fixture directories");
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let provider = path
                .strip_prefix(&root)
                .unwrap()
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            for re in [&json, &yaml] {
                for c in re.captures_iter(&text) {
                    found.insert((provider.clone(), c[1].to_string()));
                }
            }
        }
    }
    found
}

#[test]
fn lower_copies_only_what_has_upper_case() {
    assert!(matches!(
        index::lower("gpt-4o-mini"),
        Cow::Borrowed("gpt-4o-mini")
    ));
    assert!(matches!(index::lower(""), Cow::Borrowed("")));
    assert_eq!(index::lower("GPT-4o").as_ref(), "gpt-4o");
    assert!(matches!(index::lower("GPT-4o"), Cow::Owned(_)));
    assert_eq!(index::lower("GPT-4Ö").as_ref(), "gpt-4ö");
    assert_eq!(index::lower("İ").as_ref(), "İ".to_lowercase());
}

#[test]
fn bundled_lookup_agrees_with_the_table_walked_in_order_for_every_name_it_holds() {
    let book = PriceBook::bundled();
    let providers = providers(&book);
    assert!(providers.len() > 10, "{providers:?}");
    let mut checked = 0;
    let mut found = 0;
    for (i, entry) in book.entries.iter().enumerate() {
        let mut names = Vec::new();
        literals(&entry.matcher, &mut names);
        // Its own provider, and one other (a different one for each entry).
        let own = entry.provider.as_deref().unwrap_or("unknown");
        let other = providers[i % providers.len()].as_str();
        for name in names {
            let models = variants(name);
            found += agree(&book, &[own, other], models.iter().map(String::as_str));
            checked += models.len() * 2;
        }
    }
    assert!(checked > 10_000, "{checked}");
    assert!(found > checked / 4, "{found} of {checked}");
}

#[test]
fn bundled_lookup_agrees_for_near_misses_and_fixture_models_at_every_provider() {
    let book = PriceBook::bundled();
    let providers = providers(&book);
    let providers: Vec<&str> = providers.iter().map(String::as_str).collect();
    agree(&book, &providers, NEAR_MISSES.iter().copied());
    let fixtures = fixture_models();
    assert!(fixtures.len() > 20, "{fixtures:?}");
    let mut found = 0;
    for (dir, model) in &fixtures {
        let mut with_dir = providers.clone();
        with_dir.push(dir.as_str());
        found += agree(&book, &with_dir, [model.as_str()]);
    }
    assert!(found > 0);
    // A dated OpenAI id is priced by its exact bundled entry; upper case finds the same one.
    let entry = book.find("openai", "gpt-4o-mini-2024-07-18").unwrap();
    assert_eq!(entry.rates.input, Some(Rate::Flat(0.15)));
    assert!(std::ptr::eq(
        entry,
        book.find("openai", "GPT-4O-MINI-2024-07-18").unwrap()
    ));
    assert!(book.find("openai", "unknown").is_none());
    assert!(book.find("openai", "").is_none());
    assert!(book.find("no-such-provider", "gpt-4o").is_none());
}

fn entry(provider: Option<&str>, matcher: Matcher, input: f64) -> Entry {
    Entry {
        provider: provider.map(str::to_string),
        matcher,
        rates: Rates {
            input: Some(Rate::Flat(input)),
            ..Rates::default()
        },
        variants: Vec::new(),
    }
}

fn eq(s: &str) -> Matcher {
    Matcher::Equals(s.into())
}

fn prefix(s: &str) -> Matcher {
    Matcher::StartsWith(s.into())
}

/// A book where exact names, prefixes and any-provider rules overlap, in both orders.
fn overlapping() -> PriceBook {
    PriceBook::from_entries(vec![
        // 0: a prefix before an exact name of the same provider.
        entry(Some("a"), prefix("m-"), 0.0),
        entry(Some("a"), eq("m-1"), 1.0),
        // 2: an exact name before a prefix that also covers it.
        entry(Some("a"), eq("n-1"), 2.0),
        entry(Some("a"), prefix("n-"), 3.0),
        // 4: an any-provider prefix, then a provider first seen after it.
        entry(None, prefix("p-"), 4.0),
        entry(Some("b"), eq("p-1"), 5.0),
        entry(Some("b"), prefix("q-"), 6.0),
        // 7: exact names and a pattern in one rule; the same name twice.
        entry(
            Some("b"),
            Matcher::Or(vec![
                eq("r-1"),
                Matcher::Or(vec![eq("r-2"), prefix("r-3")]),
                Matcher::Regex(LazyRegex::new("^r-[0-9]{2}$").unwrap()),
            ]),
            7.0,
        ),
        entry(Some("b"), eq("r-1"), 8.0),
        // 9: any provider, exact.
        entry(None, eq("s-1"), 9.0),
        entry(Some("c"), eq("s-1"), 10.0),
        // 11: rules that are not names at all.
        entry(
            Some("c"),
            Matcher::And(vec![prefix("t-"), Matcher::Not(Box::new(eq("t-1")))]),
            11.0,
        ),
        entry(Some("c"), Matcher::Or(Vec::new()), 12.0),
        entry(Some("c"), Matcher::EndsWith("-u".into()), 13.0),
        entry(Some("c"), Matcher::Contains("v".into()), 14.0),
        entry(Some("c"), eq("t-1"), 15.0),
    ])
}

#[test]
fn overlapping_rules_keep_book_order() {
    let book = overlapping();
    let at = |p: &str, m: &str| indexed(&book, p, m);
    assert_eq!(at("a", "m-1"), Some(0));
    assert_eq!(at("a", "M-1"), Some(0));
    assert_eq!(at("a", "n-1"), Some(2));
    assert_eq!(at("a", "n-2"), Some(3));
    assert_eq!(at("a", "p-1"), Some(4));
    assert_eq!(at("b", "p-1"), Some(4));
    assert_eq!(at("b", "q-1"), Some(6));
    assert_eq!(at("z", "p-9"), Some(4));
    assert_eq!(at("z", "q-1"), None);
    assert_eq!(at("b", "r-1"), Some(7));
    assert_eq!(at("b", "R-2"), Some(7));
    assert_eq!(at("b", "r-3x"), Some(7));
    assert_eq!(at("b", "r-42"), Some(7));
    assert_eq!(at("b", "r-4"), None);
    assert_eq!(at("a", "r-1"), None);
    assert_eq!(at("c", "s-1"), Some(9));
    assert_eq!(at("z", "s-1"), Some(9));
    assert_eq!(at("c", "t-2"), Some(11));
    assert_eq!(at("c", "t-1"), Some(15));
    assert_eq!(at("c", "xx-u"), Some(13));
    assert_eq!(at("c", "vvv-u"), Some(13));
    assert_eq!(at("c", "xvx"), Some(14));
    assert_eq!(at("c", ""), None);
    let models = [
        "m-1", "M-1", "n-1", "n-2", "p-1", "q-1", "p-9", "r-1", "R-2", "r-3x", "r-42", "r-4",
        "s-1", "t-1", "t-2", "xx-u", "vvv-u", "xvx", "", "unknown",
    ];
    agree(&book, &["a", "b", "c", "z", ""], models);
}

#[test]
fn local_prices_before_bundled_keep_their_precedence() {
    let bundled = PriceBook::bundled();
    let local = PriceBook::from_entries(vec![
        entry(Some("openai"), eq("gpt-4o-mini-2024-07-18"), 1.0),
        entry(None, prefix("gpt-4o"), 2.0),
        entry(Some("bedrock"), Matcher::Contains("claude".into()), 3.0),
        entry(
            Some("azure_openai"),
            Matcher::Regex(LazyRegex::new("^gpt-4-[0-9]{4}$").unwrap()),
            4.0,
        ),
    ]);
    let book = local.before(&bundled);
    assert_eq!(book.len(), bundled.len() + 4);
    assert_eq!(book.bundled_version, bundled.bundled_version);
    let input = |p: &str, m: &str| book.find(p, m).and_then(|e| e.rates.input.clone());
    assert_eq!(
        input("openai", "GPT-4o-mini-2024-07-18"),
        Some(Rate::Flat(1.0))
    );
    assert_eq!(input("openai", "gpt-4o"), Some(Rate::Flat(2.0)));
    assert_eq!(input("azure_openai", "gpt-4o-mini"), Some(Rate::Flat(2.0)));
    assert_eq!(
        input("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        Some(Rate::Flat(3.0))
    );
    assert_eq!(input("azure_openai", "gpt-4-0613"), Some(Rate::Flat(4.0)));
    // Not covered by a local rule: the bundled entry, as without local prices.
    let bundled_gpt4 = bundled.find("openai", "gpt-4").unwrap();
    assert_eq!(
        book.find("openai", "gpt-4").unwrap().rates,
        bundled_gpt4.rates
    );
    let providers = providers(&book);
    let providers: Vec<&str> = providers.iter().map(String::as_str).collect();
    agree(&book, &providers, NEAR_MISSES.iter().copied());
    let fixtures = fixture_models();
    agree(&book, &providers, fixtures.iter().map(|(_, m)| m.as_str()));
}

/// The usage as read key by key.
fn usage_by_key(attributes: &BTreeMap<String, Json>) -> Option<Usage> {
    let n = |key: &str| attributes.get(key).and_then(Json::as_f64);
    let input = n("gen_ai.usage.input_tokens");
    let output = n("gen_ai.usage.output_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    let z = |key: &str| n(key).unwrap_or(0.0).max(0.0);
    Some(Usage {
        input: input.unwrap_or(0.0).max(0.0),
        output: output.unwrap_or(0.0).max(0.0),
        cache_read: z("gen_ai.usage.cache_read.input_tokens"),
        cache_write: z("gen_ai.usage.cache_creation.input_tokens"),
        cache_write_1h: z(CACHE_WRITE_1H_TOKENS),
        input_audio: z(AUDIO_INPUT_TOKENS),
        output_audio: z(AUDIO_OUTPUT_TOKENS),
        reasoning: z("gen_ai.usage.reasoning.output_tokens"),
    })
}

fn attributes(pairs: &[(&str, Json)]) -> BTreeMap<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn usage_is_read_from_its_keys_only() {
    use serde_json::json;
    let all = attributes(&[
        ("gen_ai.usage", json!(1)),
        ("gen_ai.usage.", json!(2)),
        ("gen_ai.usage.cache_creation.input_tokens", json!(30)),
        ("gen_ai.usage.cache_read.input_tokens", json!(40)),
        ("gen_ai.usage.cost", json!(0.5)),
        ("gen_ai.usage.input_tokens", json!(1000)),
        ("gen_ai.usage.input_tokens_extra", json!(7)),
        ("gen_ai.usage.output_tokens", json!(200)),
        ("gen_ai.usage.reasoning.output_tokens", json!(50)),
        ("gen_ai.usagex.input_tokens", json!(9)),
        ("openai.response.service_tier", json!("flex")),
        (CACHE_WRITE_1H_TOKENS, json!(10)),
        (AUDIO_INPUT_TOKENS, json!(20)),
        (AUDIO_OUTPUT_TOKENS, json!(-5)),
        ("specter.usage.audio.output_tokens_x", json!(3)),
        ("specter.usagf", json!(3)),
    ]);
    let usage = Usage::of(&all).unwrap();
    assert_eq!(
        usage,
        Usage {
            input: 1000.0,
            output: 200.0,
            cache_read: 40.0,
            cache_write: 30.0,
            cache_write_1h: 10.0,
            input_audio: 20.0,
            output_audio: 0.0,
            reasoning: 50.0,
        }
    );
    assert_eq!(Some(usage), usage_by_key(&all));
    let cases = [
        attributes(&[]),
        attributes(&[("gen_ai.usage.input_tokens", json!("12"))]),
        attributes(&[("gen_ai.usage.output_tokens", json!(3))]),
        attributes(&[
            ("gen_ai.usage.input_tokens", json!(-4)),
            ("gen_ai.usage.cache_read.input_tokens", json!(null)),
        ]),
        attributes(&[(AUDIO_INPUT_TOKENS, json!(5))]),
    ];
    for case in &cases {
        assert_eq!(Usage::of(case), usage_by_key(case), "{case:?}");
    }
    assert_eq!(Usage::of(&cases[2]).unwrap().output, 3.0);
    assert_eq!(Usage::of(&cases[3]).unwrap().input, 0.0);
}

#[test]
fn the_response_service_tier_wins_over_the_request_one() {
    use serde_json::json;
    let tier = |pairs: &[(&str, Json)]| service_tier(&attributes(pairs)).map(str::to_string);
    assert_eq!(tier(&[]), None);
    assert_eq!(
        tier(&[
            ("a.request.service_tier", json!("flex")),
            ("b.response.service_tier", json!("default")),
        ]),
        Some("default".into())
    );
    assert_eq!(
        tier(&[
            ("a.request.service_tier", json!("flex")),
            ("b.response.service_tier", json!(3)),
        ]),
        Some("flex".into())
    );
    assert_eq!(
        tier(&[
            ("a.response.service_tier", json!("priority")),
            ("b.response.service_tier", json!("default")),
            ("c.request.service_tier", json!("flex")),
        ]),
        Some("priority".into())
    );
    assert_eq!(
        tier(&[
            ("a.request.service_tier", json!(null)),
            ("b.request.service_tier", json!("flex")),
        ]),
        None
    );
    assert_eq!(tier(&[("x.service_tier", json!("flex"))]), None);
}

fn regexes<'a>(matcher: &'a Matcher, out: &mut Vec<&'a LazyRegex>) {
    match matcher {
        Matcher::Regex(re) => out.push(re),
        Matcher::Or(all) | Matcher::And(all) => all.iter().for_each(|m| regexes(m, out)),
        Matcher::Not(m) => regexes(m, out),
        _ => {}
    }
}

#[test]
fn every_bundled_regex_compiles_when_first_matched() {
    // A book of its own: the shared bundled one may have been matched by other tests.
    let book = super::file::bundled();
    let mut all = Vec::new();
    book.entries
        .iter()
        .for_each(|e| regexes(&e.matcher, &mut all));
    assert!(all.len() >= 100, "{} regexes", all.len());
    for re in all {
        assert!(
            re.compiled.get().is_none(),
            "{} compiled at load",
            re.source
        );
        re.is_match("gpt-4o");
        assert!(
            matches!(re.compiled.get(), Some(Some(_))),
            "{} does not compile",
            re.source
        );
    }
}

#[test]
fn a_regex_that_is_not_one_is_refused_when_the_file_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.yaml");
    let text =
        "models:\n  - provider: openai\n    match: {regex: 'gpt-(4'}\n    prices: {input: 1}\n";
    std::fs::write(&path, text).unwrap();
    let error = super::file::load_file(&path).unwrap_err().to_string();
    assert!(
        error.contains("`gpt-(4` is not a regular expression"),
        "{error}"
    );
    assert!(LazyRegex::new("^gpt-4o(-mini)?$")
        .unwrap()
        .is_match("gpt-4o-mini"));
    assert!(!LazyRegex::new("^gpt-4o(-mini)?$")
        .unwrap()
        .is_match("gpt-4"));
}
