//! Reading price files: the bundled table (JSON, checked by the tests) and a user's own file
//! (YAML or JSON), whose problems are reported as located diagnostics (`file:line:col`).

use std::path::Path;

use serde_json::Value as Json;

use super::spec::{MatchSpec, ModelPriceSpec, PriceFile, RateSpec, RatesSpec};
use super::{Entry, LazyRegex, Matcher, PriceBook, Rate, Rates};
use crate::diagnostic::{Diagnostic, Diagnostics};

/// Largest price file read, in bytes.
pub const MAX_PRICE_FILE_BYTES: u64 = 16 << 20;

/// Why a price file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PriceFileError {
    /// Not a readable regular file of at most [`MAX_PRICE_FILE_BYTES`].
    #[error(transparent)]
    File(#[from] crate::files::ReadError),
    /// Its content is not a valid price file.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// The bundled table. It is checked by the tests; were it ever unreadable, no cost would be
/// computed rather than a wrong one.
pub(super) fn bundled() -> PriceBook {
    let Ok(file) = serde_json::from_str::<PriceFile>(super::BUNDLED) else {
        return PriceBook::default();
    };
    let mut problems = Problems::new("prices/genai-prices.json", None);
    let entries = compile(&indexed(file.models), &mut problems);
    let version = match (&file.version, &file.converted) {
        (Some(v), Some(d)) => Some(format!("genai-prices {v}, {d}")),
        (Some(v), None) => Some(format!("genai-prices {v}")),
        _ => None,
    };
    PriceBook::indexed(entries, version)
}

fn indexed(models: Vec<ModelPriceSpec>) -> Vec<(usize, ModelPriceSpec)> {
    models.into_iter().enumerate().collect()
}

/// Checks the bundled table: every problem in it (the tests assert there is none).
pub fn check_bundled() -> Diagnostics {
    match serde_json::from_str::<PriceFile>(super::BUNDLED) {
        Ok(file) => {
            let mut problems = Problems::new("prices/genai-prices.json", None);
            compile(&indexed(file.models), &mut problems);
            Diagnostics(problems.found)
        }
        Err(e) => Diagnostics(vec![Diagnostic {
            file: "prices/genai-prices.json".into(),
            line: e.line(),
            col: e.column(),
            location: String::new(),
            message: e.to_string(),
            help: None,
        }]),
    }
}

/// Reads a user's price file (YAML or JSON): its entries, in order.
pub fn load_file(path: &Path) -> Result<PriceBook, PriceFileError> {
    let text = crate::files::read_text(path, MAX_PRICE_FILE_BYTES)?;
    let name = path.display().to_string();
    let doc = crate::yaml::parse(&text).map_err(|e| {
        PriceFileError::Invalid(Diagnostics(vec![Diagnostic {
            file: name.clone(),
            line: e.pos.line,
            col: e.pos.col,
            location: String::new(),
            message: e.message,
            help: None,
        }]))
    })?;
    let mut problems = Problems::new(&name, Some(&doc));
    let models = read_models(&doc.value, &mut problems);
    let entries = compile(&models, &mut problems);
    if !problems.found.is_empty() {
        problems.found.sort();
        return Err(PriceFileError::Invalid(Diagnostics(problems.found)));
    }
    Ok(PriceBook::from_entries(entries))
}

/// The file's entries, each read on its own so that a problem is located at its entry.
fn read_models(value: &Json, problems: &mut Problems<'_>) -> Vec<(usize, ModelPriceSpec)> {
    let Some(map) = value.as_object() else {
        problems.add("", "a price file is a mapping with a `models` list".into());
        return Vec::new();
    };
    for key in map.keys() {
        if ![
            "source",
            "version",
            "converted",
            "license",
            "unit",
            "models",
        ]
        .contains(&key.as_str())
        {
            problems.add(
                &format!("/{}", crate::yaml::escape_segment(key)),
                format!("unknown key `{key}`"),
            );
        }
    }
    let Some(models) = map.get("models").and_then(Json::as_array) else {
        problems.add("", "`models` must be a list of model prices".into());
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, model) in models.iter().enumerate() {
        match serde_json::from_value::<ModelPriceSpec>(model.clone()) {
            Ok(spec) => out.push((i, spec)),
            Err(e) => {
                let message = e.to_string();
                let key = message.split('`').nth(1).unwrap_or_default();
                let pointer = problems.locate_key(&format!("/models/{i}"), key);
                problems.add(&pointer, message);
            }
        }
    }
    out
}

/// Problems found in one file, located through its document when it has one.
struct Problems<'a> {
    file: String,
    doc: Option<&'a crate::yaml::Document>,
    found: Vec<Diagnostic>,
}

impl<'a> Problems<'a> {
    fn new(file: &str, doc: Option<&'a crate::yaml::Document>) -> Problems<'a> {
        Problems {
            file: file.into(),
            doc,
            found: Vec::new(),
        }
    }

    /// The pointer of the first node named `key` inside `within` (serde names the key of a
    /// problem, not its path), else `within` itself.
    fn locate_key(&self, within: &str, key: &str) -> String {
        let suffix = format!("/{}", crate::yaml::escape_segment(key));
        let prefix = format!("{within}/");
        let found = self.doc.and_then(|d| {
            d.positions
                .iter()
                .filter(|(p, _)| p.starts_with(&prefix) && p.ends_with(&suffix))
                .min_by_key(|(p, pos)| (pos.line, pos.col, p.len()))
                .map(|(p, _)| p.clone())
        });
        found.unwrap_or_else(|| within.to_string())
    }

    fn add(&mut self, pointer: &str, message: String) {
        let pos = self
            .doc
            .map(|d| d.position(pointer))
            .unwrap_or(crate::yaml::Pos { line: 1, col: 1 });
        self.found.push(Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            location: pointer.trim_start_matches('/').replace('/', "."),
            message,
            help: None,
        });
    }
}

/// Compiles entries, recording every problem; entries with problems are left out.
fn compile(models: &[(usize, ModelPriceSpec)], problems: &mut Problems<'_>) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, spec) in models {
        let at = format!("/models/{i}");
        let before = problems.found.len();
        let matcher = match (&spec.model, &spec.matches) {
            (Some(model), None) => model_matcher(model, &format!("{at}/model"), problems),
            (None, Some(rule)) => matcher(rule, &format!("{at}/match"), problems),
            (Some(_), Some(_)) => {
                problems.add(&at, "give `model` or `match`, not both".into());
                None
            }
            (None, None) => {
                problems.add(&at, "`model` or `match` is required".into());
                None
            }
        };
        let base = rates(&spec.prices, &format!("{at}/prices"), problems);
        let mut variants = Vec::new();
        for (j, v) in spec.variants.iter().enumerate() {
            let pointer = format!("{at}/variants/{j}");
            if let Some(key) = v.when.keys().find(|k| k.as_str() != "service_tier") {
                problems.add(
                    &format!("{pointer}/when"),
                    format!("unknown variant condition `{key}` (only `service_tier` is read)"),
                );
            }
            variants.push((
                v.when.clone(),
                rates(&v.prices, &format!("{pointer}/prices"), problems),
            ));
        }
        if let (Some(matcher), true) = (matcher, problems.found.len() == before) {
            out.push(Entry {
                provider: spec.provider.clone(),
                matcher,
                rates: base,
                variants,
            });
        }
    }
    out
}

fn model_matcher(model: &str, pointer: &str, problems: &mut Problems<'_>) -> Option<Matcher> {
    let lower = model.to_lowercase();
    let (stem, prefix) = match lower.strip_suffix('*') {
        Some(stem) => (stem.to_string(), true),
        None => (lower.clone(), false),
    };
    if stem.is_empty() || stem.contains('*') {
        problems.add(
            pointer,
            format!("`{model}`: a model name, with `*` only at the end"),
        );
        return None;
    }
    Some(if prefix {
        Matcher::StartsWith(stem)
    } else {
        Matcher::Equals(stem)
    })
}

fn matcher(rule: &MatchSpec, pointer: &str, problems: &mut Problems<'_>) -> Option<Matcher> {
    let list = |rules: &[MatchSpec], key: &str, problems: &mut Problems<'_>| {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| matcher(r, &format!("{pointer}/{key}/{i}"), problems))
            .collect::<Option<Vec<_>>>()
    };
    Some(match rule {
        MatchSpec::Equals(s) => Matcher::Equals(s.to_lowercase()),
        MatchSpec::StartsWith(s) => Matcher::StartsWith(s.to_lowercase()),
        MatchSpec::EndsWith(s) => Matcher::EndsWith(s.to_lowercase()),
        MatchSpec::Contains(s) => Matcher::Contains(s.to_lowercase()),
        MatchSpec::Regex(r) => match LazyRegex::new(r) {
            Ok(re) => Matcher::Regex(re),
            Err(e) => {
                problems.add(
                    &format!("{pointer}/regex"),
                    format!("`{r}` is not a regular expression: {e}"),
                );
                return None;
            }
        },
        MatchSpec::Or(rules) => Matcher::Or(list(rules, "or", problems)?),
        MatchSpec::And(rules) => Matcher::And(list(rules, "and", problems)?),
        MatchSpec::Not(rule) => Matcher::Not(Box::new(matcher(
            rule,
            &format!("{pointer}/not"),
            problems,
        )?)),
    })
}

fn rates(spec: &RatesSpec, pointer: &str, problems: &mut Problems<'_>) -> Rates {
    let mut rate = |value: &Option<RateSpec>, key: &str| {
        value
            .as_ref()
            .and_then(|v| one_rate(v, &format!("{pointer}/{key}"), problems))
    };
    Rates {
        input: rate(&spec.input, "input"),
        output: rate(&spec.output, "output"),
        cache_read: rate(&spec.cache_read, "cache_read"),
        cache_write: rate(&spec.cache_write, "cache_write"),
        cache_write_1h: rate(&spec.cache_write_1h, "cache_write_1h"),
        input_audio: rate(&spec.input_audio, "input_audio"),
        cache_audio_read: rate(&spec.cache_audio_read, "cache_audio_read"),
        output_audio: rate(&spec.output_audio, "output_audio"),
        output_reasoning: rate(&spec.output_reasoning, "output_reasoning"),
        request: spec.request.as_ref().and_then(|fee| {
            one_rate(
                &RateSpec::Flat(*fee),
                &format!("{pointer}/request"),
                problems,
            )
        }),
    }
}

fn one_rate(spec: &RateSpec, pointer: &str, problems: &mut Problems<'_>) -> Option<Rate> {
    let valid = |p: f64| p.is_finite() && p >= 0.0;
    match spec {
        RateSpec::Flat(p) if valid(*p) => Some(Rate::Flat(*p)),
        RateSpec::Tiered(t) if valid(t.base) && t.tiers.iter().all(|x| valid(x.price)) => {
            let mut tiers: Vec<(u64, f64)> = t.tiers.iter().map(|x| (x.start, x.price)).collect();
            tiers.sort_by_key(|(start, _)| *start);
            Some(Rate::Tiered(t.base, tiers))
        }
        _ => {
            problems.add(
                pointer,
                "prices must be finite and not negative (USD per million tokens)".into(),
            );
            None
        }
    }
}
