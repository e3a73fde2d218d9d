//! Snapshot files in the format of `insta` (`cargo insta review` reads them): a YAML header
//! between two `---` lines (`source`, `expression`, ...), then the value as pretty JSON written
//! the way `insta::assert_json_snapshot!` writes it, then a newline. A snapshot waiting for
//! review is the same text in `<name>.snap.new`.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use similar::{ChangeTag, TextDiff};

/// The header line that opens and closes the metadata of a snapshot.
const MARKER: &str = "---";

/// Lines of context around each change of a diff.
const DIFF_CONTEXT: usize = 3;

/// A snapshot: its metadata header and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The header lines between the two `---` markers, each ending in `\n`.
    pub header: String,
    /// The snapshot value as text, without the final newline.
    pub contents: String,
}

impl Snapshot {
    /// A new snapshot with the header `insta` writes: `source` and `expression`.
    pub fn new(source: &str, expression: &str, contents: String) -> Snapshot {
        Snapshot {
            header: format!("source: {source}\nexpression: {expression}\n"),
            contents,
        }
    }

    /// Reads the text of a `.snap` or `.snap.new` file. Text without the opening `---` has no
    /// header (insta's legacy format is read as contents only).
    pub fn parse(text: &str) -> Snapshot {
        let mut lines = text.split_inclusive('\n');
        let opens = lines.clone().next().map(str::trim_end) == Some(MARKER);
        if !opens {
            return Snapshot {
                header: String::new(),
                contents: text.trim_end().to_string(),
            };
        }
        lines.next();
        let mut header = String::new();
        for line in lines.by_ref() {
            if line.trim_end() == MARKER {
                break;
            }
            header.push_str(line);
        }
        let contents: String = lines.collect();
        Snapshot {
            header,
            contents: contents.trim_end().to_string(),
        }
    }

    /// The file text: header, markers, contents and a final newline.
    pub fn to_text(&self) -> String {
        format!("{MARKER}\n{}{MARKER}\n{}\n", self.header, self.contents)
    }

    /// The value of a top-level header key (`source`, `expression`).
    pub fn header_value(&self, key: &str) -> Option<String> {
        let doc = crate::yaml::parse(&self.header).ok()?;
        doc.value
            .get(key)
            .and_then(Json::as_str)
            .map(str::to_string)
    }

    /// Whether `contents` is this snapshot's value, as insta compares them (trailing whitespace
    /// and CRLF line ends do not count).
    pub fn matches(&self, contents: &str) -> bool {
        normalize(&self.contents) == normalize(contents)
    }

    /// The snapshot as accepted: the pending-only `assertion_line` key removed from the header.
    pub fn for_persistence(&self) -> Snapshot {
        let header = self
            .header
            .split_inclusive('\n')
            .filter(|line| !line.starts_with("assertion_line:"))
            .collect();
        Snapshot {
            header,
            contents: self.contents.clone(),
        }
    }
}

/// Trailing whitespace removed and CRLF made LF, as insta does before comparing.
fn normalize(text: &str) -> String {
    text.trim_end().replace("\r\n", "\n")
}

/// The file name of a case's snapshot: `fixtures__<provider>__<case>.snap`.
pub fn file_name(provider: &str, case: &str) -> String {
    format!("fixtures__{provider}__{case}.snap")
}

/// The provider and case a snapshot file name stands for, if it is a fixture snapshot.
pub fn case_of_file_name(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix("fixtures__")?
        .strip_suffix(".snap")?
        .split_once("__")
}

/// The pending file of a snapshot: `<name>.snap.new`.
pub fn pending_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_os_string();
    name.push(".new");
    PathBuf::from(name)
}

/// JSON pretty-printed as `insta::assert_json_snapshot!` prints it: two-space indentation, `[]`
/// and `{}` for empty containers, keys in their order, floats with Rust's `Display` (and `.0`
/// for whole numbers).
pub fn to_pretty_json(value: &Json) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

fn write_value(out: &mut String, value: &Json, depth: usize) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => write_number(out, n),
        Json::String(s) => write_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(out, i == 0, depth + 1);
                write_value(out, item, depth + 1);
            }
            close(out, ']', items.is_empty(), depth);
        }
        Json::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                separator(out, i == 0, depth + 1);
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item, depth + 1);
            }
            close(out, '}', map.is_empty(), depth);
        }
    }
}

fn separator(out: &mut String, first: bool, depth: usize) {
    out.push_str(if first { "\n" } else { ",\n" });
    indent(out, depth);
}

fn close(out: &mut String, bracket: char, empty: bool, depth: usize) {
    if !empty {
        out.push('\n');
        indent(out, depth);
    }
    out.push(bracket);
}

fn indent(out: &mut String, depth: usize) {
    out.extend(std::iter::repeat_n(' ', depth * 2));
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
        let text = f.to_string();
        out.push_str(&text);
        if !text.contains('.') {
            out.push_str(".0");
        }
    } else {
        out.push_str("null");
    }
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// What a line of a diff is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    /// A hunk header, `@@ -a,b +c,d @@`.
    Hunk,
    /// A line of both texts.
    Same,
    /// A line of the old text only.
    Removed,
    /// A line of the new text only.
    Added,
}

/// One line of a unified diff, without its `-`/`+`/` ` mark and line end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    /// What the line is.
    pub kind: DiffKind,
    /// The text.
    pub text: String,
}

/// The unified diff from `old` to `new`, three lines of context around each change.
pub fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let text_diff = TextDiff::from_lines(old, new);
    let mut lines = Vec::new();
    for hunk in text_diff
        .unified_diff()
        .context_radius(DIFF_CONTEXT)
        .iter_hunks()
    {
        lines.push(DiffLine {
            kind: DiffKind::Hunk,
            text: hunk.header().to_string(),
        });
        for change in hunk.iter_changes() {
            let kind = match change.tag() {
                ChangeTag::Equal => DiffKind::Same,
                ChangeTag::Delete => DiffKind::Removed,
                ChangeTag::Insert => DiffKind::Added,
            };
            lines.push(DiffLine {
                kind,
                text: change.value().trim_end_matches(['\n', '\r']).to_string(),
            });
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_snap_file_reads_back_to_the_same_bytes() {
        let text = "---\nsource: tests/fixtures.rs\nexpression: output\n---\n{\n  \"a\": 1\n}\n";
        let snap = Snapshot::parse(text);
        assert_eq!(
            snap.header,
            "source: tests/fixtures.rs\nexpression: output\n"
        );
        assert_eq!(snap.contents, "{\n  \"a\": 1\n}");
        assert_eq!(snap.to_text(), text);
        assert_eq!(snap.header_value("source").unwrap(), "tests/fixtures.rs");
        assert_eq!(snap.header_value("expression").unwrap(), "output");
    }

    #[test]
    fn a_new_snapshot_has_insta_s_header() {
        let snap = Snapshot::new("tests/fixtures.rs", "output", "{}".into());
        assert_eq!(
            snap.to_text(),
            "---\nsource: tests/fixtures.rs\nexpression: output\n---\n{}\n"
        );
    }

    #[test]
    fn a_pending_snapshot_loses_its_assertion_line_when_accepted() {
        let snap = Snapshot::parse(
            "---\nsource: tests/fixtures.rs\nassertion_line: 97\nexpression: output\n---\n[]\n",
        );
        assert_eq!(
            snap.for_persistence().to_text(),
            "---\nsource: tests/fixtures.rs\nexpression: output\n---\n[]\n"
        );
    }

    #[test]
    fn comparison_ignores_trailing_whitespace_and_crlf() {
        let snap = Snapshot::parse("---\nsource: x\n---\n{\r\n  \"a\": 1\r\n}\r\n\r\n");
        assert!(snap.matches("{\n  \"a\": 1\n}"));
        assert!(!snap.matches("{\n  \"a\": 2\n}"));
    }

    #[test]
    fn json_is_printed_as_insta_prints_it() {
        let value = serde_json::json!({
            "s": "a\"b\\c\nd\u{1}é",
            "n": [1, -2, 0.5, 3.0, 1e-7],
            "empty": [],
            "obj": {},
            "nested": {"x": null, "y": true}
        });
        assert_eq!(
            to_pretty_json(&value),
            "{\n  \"s\": \"a\\\"b\\\\c\\nd\\u0001é\",\n  \"n\": [\n    1,\n    -2,\n    0.5,\n    3.0,\n    0.0000001\n  ],\n  \"empty\": [],\n  \"obj\": {},\n  \"nested\": {\n    \"x\": null,\n    \"y\": true\n  }\n}"
        );
    }

    #[test]
    fn file_names_map_to_cases_and_pending_files() {
        assert_eq!(
            file_name("openai", "chat_plain"),
            "fixtures__openai__chat_plain.snap"
        );
        assert_eq!(
            case_of_file_name("fixtures__azure_openai__chat_plain.snap"),
            Some(("azure_openai", "chat_plain"))
        );
        assert_eq!(case_of_file_name("specs__broken.snap"), None);
        assert_eq!(
            pending_path(Path::new("s/fixtures__a__b.snap")),
            PathBuf::from("s/fixtures__a__b.snap.new")
        );
    }

    #[test]
    fn the_diff_shows_the_changed_line_with_context() {
        let lines = diff("a\nb\nc\n", "a\nB\nc\n");
        let kinds: Vec<DiffKind> = lines.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            vec![
                DiffKind::Hunk,
                DiffKind::Same,
                DiffKind::Removed,
                DiffKind::Added,
                DiffKind::Same
            ]
        );
        assert_eq!(lines[0].text, "@@ -1,3 +1,3 @@");
        assert_eq!(lines[2].text, "b");
        assert_eq!(lines[3].text, "B");
    }
}
