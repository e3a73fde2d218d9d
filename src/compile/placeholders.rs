//! Scaffold placeholders left in a spec: `specter init-provider` marks every value to fill in with
//! a `TODO` note (a comment or a value that starts with `TODO`), and a spec that still holds one
//! is not finished. `specter validate` reports each
//! of them; loading a spec (the gateway, `list`) does not.

use super::load::Source;
use crate::diagnostic::Diagnostic;

/// The marker the scaffold puts beside every value to fill in.
const MARKER: &str = "TODO";

/// Every `TODO` marker of a source (a whole word, in a value or a comment), with its line and
/// column.
pub fn scaffold_placeholders(source: &Source) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    for (n, line) in source.text.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line.get(from..).and_then(|rest| rest.find(MARKER)) {
            let start = from + at;
            let end = start + MARKER.len();
            from = end;
            if is_word_char(line[..start].chars().next_back())
                || is_word_char(line[end..].chars().next())
                || !starts_a_note(&line[..start])
            {
                continue;
            }
            found.push(Diagnostic {
                file: source.name.clone(),
                line: n + 1,
                col: line[..start].chars().count() + 1,
                location: String::new(),
                message: "scaffold placeholder `TODO` left in the spec".into(),
                help: Some("put the provider's real value here and delete the `TODO` note".into()),
            });
        }
    }
    found
}

/// Whether a marker after `before` opens a comment or a value (`# TODO`, `key: TODO`,
/// `- TODO`), as the scaffold writes it, rather than being a word within a sentence
/// ("replace every TODO").
fn starts_a_note(before: &str) -> bool {
    let before = before.trim_end();
    before.is_empty() || before.ends_with(['#', ':', '-', '[', ','])
}

fn is_word_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_marker_with_its_column() {
        let source = Source {
            name: "p.yaml".into(),
            text: "# Replace every TODO.\nname: p # TODO: a name\ndocs: TODOS and TODO_x are words\n  # TODO\nx: TODO what\nhosts: [a, TODO]\n"
                .into(),
        };
        let found = scaffold_placeholders(&source);
        let places: Vec<(usize, usize)> = found.iter().map(|d| (d.line, d.col)).collect();
        assert_eq!(places, vec![(2, 11), (4, 5), (5, 4), (6, 12)]);
        assert_eq!(
            found[0].to_string(),
            "p.yaml:2:11: scaffold placeholder `TODO` left in the spec\n  help: put the provider's real value here and delete the `TODO` note"
        );
    }
}
