//! Small parsers: URLs, route templates, JSONPaths.

use super::*;

#[test]
fn ipv6_host_without_port_parses() {
    let t = HttpTarget::parse("http://[::1]/api/chat");
    assert!(t.is_some(), "`http://[::1]/api/chat` is not parsed");
    let t = t.unwrap();
    assert_eq!(
        (t.host.as_str(), t.port(), t.path.as_str()),
        ("[::1]", Some(80), "/api/chat")
    );
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn url_parsing_never_panics(url in prop_oneof![
        any::<String>(),
        "(https?|HTTP|ftp)://[a-zA-Z0-9.:@\\[\\]%_-]{0,20}(/[^?#]{0,10}){0,3}(\\?[a-z=&%+]{0,12})?(#.*)?",
    ]) {
        if let Some(t) = HttpTarget::parse(&url) {
            prop_assert!(t.path.starts_with('/') || !t.path.is_empty());
            let _ = t.port();
        }
    }

    #[test]
    fn route_templates_never_panic(source in prop_oneof![any::<String>(), "(/(\\{[a-z_]{0,3}\\}?|[a-z:.{}-]{0,4}){0,3}){0,4}"], path in "(/[a-z{}:%0-9]{0,5}){0,5}") {
        if let Ok(t) = parse_template(&source) {
            let _ = t.matches(&path);
        }
    }

    /// A template filled with percent-encoded values matches its own path and gives the values
    /// back.
    #[test]
    fn route_templates_match_their_own_paths(
        segments in prop::collection::vec(prop::collection::vec((any::<bool>(), "[a-z0-9]{0,4}"), 1..4), 1..5),
        values in prop::collection::vec("\\PC{1,6}", 16),
        separators in prop::collection::vec(select(&[":", "-", ".", "_", "~"][..]), 16),
    ) {
        // A segment alternates literals and captures; a literal after a capture starts with a
        // separator, which percent-encoding never produces, so the capture's end is unambiguous.
        let mut source = String::new();
        let mut path = String::new();
        let mut expected = Vec::new();
        let mut n = 0;
        for segment in &segments {
            source.push('/');
            path.push('/');
            let mut after_capture = false;
            for (capture, literal) in segment {
                if *capture && !after_capture && n < values.len() {
                    let name = format!("c{n}");
                    source.push_str(&format!("{{{name}}}"));
                    path.push_str(&percent_encoding::utf8_percent_encode(&values[n], percent_encoding::NON_ALPHANUMERIC).to_string());
                    expected.push((name, values[n].clone()));
                    n += 1;
                    after_capture = true;
                } else {
                    let text = if after_capture { format!("{}{literal}", separators[n % 16]) } else { literal.clone() };
                    source.push_str(&text);
                    path.push_str(&text);
                    after_capture = false;
                }
            }
        }
        let template = parse_template(&source);
        prop_assert!(template.is_ok(), "{source}: {:?}", template.err());
        prop_assert_eq!(template.unwrap().matches(&path), Some(expected), "{} / {}", source, path);
    }

    #[test]
    fn jsonpaths_never_panic(source in arb_spec_string(), doc in arb_json()) {
        if let Ok(path) = JsonPath::parse(&source) {
            let mut out = Vec::new();
            path.select(&doc, &mut out);
            let first = path.first(&doc);
            prop_assert_eq!(first, out.first().copied(), "{}", source);
            if path.is_singular() {
                prop_assert!(out.len() <= 1, "{} is singular but selected {:?}", source, out);
            }
        }
    }

    /// The plain-step fast path selects what the general RFC 9535 evaluator selects.
    #[test]
    fn jsonpath_fast_path_agrees_with_the_general_evaluator(
        steps in prop::collection::vec(prop_oneof![
            select(KEYS).prop_map(|k| format!(".{k}")),
            "[a-z_][a-z0-9_]{0,5}".prop_map(|k| format!(".{k}")),
            select(KEYS).prop_map(|k| format!("['{k}']")),
            "[a-z -]{0,5}".prop_map(|k| format!("['{k}']")),
            (-3i64..4).prop_map(|i| format!("[{i}]")),
            Just("[*]".to_string()),
            Just(".*".to_string()),
        ], 0..5),
        doc in arb_json(),
    ) {
        let source = format!("${}", steps.concat());
        let path = JsonPath::parse(&source).unwrap();
        let mut fast = Vec::new();
        path.select(&doc, &mut fast);
        let general = jsonpath_rust::query::js_path_vals(&source, &doc).unwrap();
        prop_assert_eq!(fast, general, "{}", source);
    }
}

// ---------------------------------------------------------------------------------------------
