//! Diagnostics: problems found in provider specs, rendered as
//! `file:line:col: <where in the spec>: <what is wrong>` with an optional `help:` line.

use std::fmt;

/// One problem in a provider spec.
///
/// ```
/// use specter::Diagnostic;
/// let d = Diagnostic {
///     file: "providers/x.yaml".into(),
///     line: 3,
///     col: 5,
///     location: "operations[0].id".into(),
///     message: "duplicate operation id `chat`".into(),
///     help: None,
/// };
/// assert_eq!(d.to_string(), "providers/x.yaml:3:5: operations[0].id: duplicate operation id `chat`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The file, as it was named when loaded.
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
    /// Where in the spec, e.g. `operations[0].response.attributes."gen_ai.usage.input_tokens"`.
    pub location: String,
    /// What is wrong, lower case, user input in backticks.
    pub message: String,
    /// How to fix it, when a fix can be suggested.
    pub help: Option<String>,
}

/// Quoted file content is printed with its control characters escaped: one diagnostic is one
/// line (two with its help), whatever the spec holds.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escape = crate::printable::escape_controls;
        write!(f, "{}:{}:{}: ", escape(&self.file), self.line, self.col)?;
        if !self.location.is_empty() {
            write!(f, "{}: ", escape(&self.location))?;
        }
        write!(f, "{}", escape(&self.message))?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {}", escape(help))?;
        }
        Ok(())
    }
}

/// Every problem found in one load, in file and line order.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("acme.yaml"), "id: acme\noperations: 3\n").unwrap();
/// let Err(specter::LoadError::Invalid(diagnostics)) = specter::Catalog::load(&[dir.path().into()])
/// else {
///     panic!("the spec is invalid");
/// };
/// assert!(!diagnostics.is_empty());
/// // One located problem a line, as `specter validate` prints them.
/// assert!(diagnostics.to_string().contains("acme.yaml:"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Renders a JSON pointer as a spec location: `/operations/0/request/attributes/gen_ai.x` →
/// `operations[0].request.attributes."gen_ai.x"`.
pub fn location_of(pointer: &str) -> String {
    let mut out = String::new();
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&segment);
            out.push(']');
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        let plain = !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if plain {
            out.push_str(&segment);
        } else {
            out.push('"');
            out.push_str(&segment);
            out.push('"');
        }
    }
    out
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            location_of("/operations/0/response/attributes/gen_ai.usage.input_tokens"),
            "operations[0].response.attributes.\"gen_ai.usage.input_tokens\""
        );
        assert_eq!(location_of(""), "");
        assert_eq!(location_of("/a~1b"), "\"a/b\"");
    }

    #[test]
    fn quoted_content_cannot_add_lines_or_escapes() {
        let d = Diagnostic {
            file: "x.yaml".into(),
            line: 1,
            col: 2,
            location: "operations[0].\"a\nb\"".into(),
            message: "unknown key `k\nx.yaml:9:9: forged`\u{1b}[2J".into(),
            help: Some("did you mean `\u{9b}1m`?".into()),
        };
        assert_eq!(
            d.to_string(),
            "x.yaml:1:2: operations[0].\"a\\nb\": unknown key `k\\nx.yaml:9:9: forged`\\u{1b}[2J\n  help: did you mean `\\u{9b}1m`?"
        );
    }

    #[test]
    fn suggestions() {
        let keys = ["gen_ai.request.model", "gen_ai.response.model"];
        assert_eq!(
            did_you_mean("gen_ai.request.modle", keys),
            Some("gen_ai.request.model")
        );
        assert_eq!(did_you_mean("completely.other", keys), None);
    }
}
