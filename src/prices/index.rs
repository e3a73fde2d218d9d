//! The lookup index of a price book, built once with the book.
//!
//! A price book answers "the first entry whose provider and model match" for every call. The
//! index gives the same answer without walking the whole table: the model names entries give
//! exactly (`equals`, alone or in an `or`) sit in a hash map, and the rest of each entry's rule
//! (prefixes, substrings, regular expressions, `and`/`not`) sits in a list per provider, in book
//! order. A lookup is one hash probe for the exact names, then a walk of that provider's pattern
//! list that stops at the first exact hit: an entry earlier in the book still wins, as it does
//! when the whole table is walked. Nothing is cached per looked-up model: the index only holds
//! the book's own names.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{Entry, Matcher};

/// A book's entries, indexed for [`Index::find`].
#[derive(Debug, Clone, Default)]
pub(super) struct Index {
    /// Exact model name → for each provider naming it (`None`: any provider), the first entry.
    exact: HashMap<String, Vec<(Option<String>, usize)>>,
    /// Provider → the pattern rules that apply to it (its own and any-provider ones), in book
    /// order.
    patterns: HashMap<String, Vec<Pattern>>,
    /// The any-provider pattern rules, in book order (for a provider with no rules of its own).
    any_patterns: Vec<Pattern>,
}

/// What is left of an entry's rule once its exact names are taken out.
#[derive(Debug, Clone)]
struct Pattern {
    /// The entry's position in the book.
    entry: usize,
    /// The rest of its rule.
    matcher: Matcher,
}

impl Index {
    /// The index of these entries.
    pub(super) fn new(entries: &[Entry]) -> Index {
        let mut index = Index::default();
        for (entry, e) in entries.iter().enumerate() {
            let (names, rest) = split(&e.matcher);
            for name in names {
                index.add_exact(name, e.provider.as_deref(), entry);
            }
            let Some(matcher) = rest else { continue };
            let pattern = Pattern { entry, matcher };
            match e.provider.as_deref() {
                None => {
                    for list in index.patterns.values_mut() {
                        list.push(pattern.clone());
                    }
                    index.any_patterns.push(pattern);
                }
                Some(p) => {
                    index
                        .patterns
                        .entry(p.to_string())
                        .or_insert_with(|| index.any_patterns.clone())
                        .push(pattern);
                }
            }
        }
        index
    }

    /// Records that `entry` names `model` exactly, unless an earlier entry of the same provider
    /// already does.
    fn add_exact(&mut self, model: &str, provider: Option<&str>, entry: usize) {
        let list = self.exact.entry(model.to_string()).or_default();
        if !list.iter().any(|(p, _)| p.as_deref() == provider) {
            list.push((provider.map(str::to_string), entry));
        }
    }

    /// The position of the first entry for this provider and model: the same answer as trying
    /// every entry in order.
    pub(super) fn find(&self, provider: &str, model: &str) -> Option<usize> {
        let model = lower(model);
        let exact = self.exact.get(model.as_ref()).and_then(|list| {
            list.iter()
                .filter(|(p, _)| p.as_deref().is_none_or(|p| p == provider))
                .map(|(_, entry)| *entry)
                .min()
        });
        let bound = exact.unwrap_or(usize::MAX);
        let patterns = self.patterns.get(provider).unwrap_or(&self.any_patterns);
        patterns
            .iter()
            .take_while(|p| p.entry < bound)
            .find(|p| p.matcher.matches(&model))
            .map(|p| p.entry)
            .or(exact)
    }
}

/// A model name lower-cased as the rules compare it, copied only when it has anything to
/// lower-case.
pub(super) fn lower(model: &str) -> Cow<'_, str> {
    if model
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
    {
        Cow::Owned(model.to_lowercase())
    } else {
        Cow::Borrowed(model)
    }
}

/// A rule split into the names it accepts exactly and the rule for everything else: the rule
/// matches a name exactly when the name is one of those names or the rest (if any) matches it.
fn split(matcher: &Matcher) -> (Vec<&str>, Option<Matcher>) {
    match matcher {
        Matcher::Equals(name) => (vec![name.as_str()], None),
        Matcher::Or(all) => {
            let mut names = Vec::new();
            let mut rests = Vec::new();
            for m in all {
                let (n, rest) = split(m);
                names.extend(n);
                rests.extend(rest);
            }
            let rest = match rests.len() {
                0 => None,
                1 => rests.pop(),
                _ => Some(Matcher::Or(rests)),
            };
            (names, rest)
        }
        other => (Vec::new(), Some(other.clone())),
    }
}
