//! Text made safe to print on a terminal or in a log: every human-readable line that quotes data
//! specter did not write itself (model names and error messages from upstreams, spec and
//! configuration file content, environment values) goes through [`escape_controls`], so that a
//! newline cannot forge a log line and an escape sequence cannot reach the terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a character is a control character: C0 (U+0000–U+001F), DEL (U+007F) or C1
/// (U+0080–U+009F).
pub fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Escapes control characters: `\n`, `\r` and `\t` become `\\n`, `\\r` and `\\t`, every other one
/// `\u{XX}` (ESC is `\u{1b}`). Everything else, backslashes included, is left as it is; text
/// without control characters is returned borrowed.
///
/// ```
/// use specter::unstable::printable::escape_controls;
/// assert_eq!(escape_controls("gpt-4o"), "gpt-4o");
/// assert_eq!(escape_controls("a\nb"), "a\\nb");
/// assert_eq!(escape_controls("\u{1b}[31mred"), "\\u{1b}[31mred");
/// ```
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_c0_del_and_c1() {
        assert_eq!(
            escape_controls("model\nspecter: forged ok"),
            "model\\nspecter: forged ok"
        );
        assert_eq!(escape_controls("a\r\tb"), "a\\r\\tb");
        assert_eq!(
            escape_controls("\u{1b}[31mred\u{1b}[0m"),
            "\\u{1b}[31mred\\u{1b}[0m"
        );
        assert_eq!(escape_controls("\u{0}\u{7}\u{7f}"), "\\u{0}\\u{7}\\u{7f}");
        assert_eq!(escape_controls("\u{9b}31m\u{85}"), "\\u{9b}31m\\u{85}");
    }

    #[test]
    fn leaves_printable_text_alone() {
        for text in [
            "",
            "gpt-4o-mini",
            "C:\\path\\n",
            "naïve – ok ✓",
            "\u{a0}\u{2028}",
        ] {
            assert!(
                matches!(escape_controls(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn escaped_text_has_no_control_characters() {
        let all: String = (0u32..0x200).filter_map(char::from_u32).collect();
        let escaped = escape_controls(&all);
        assert!(!escaped.chars().any(is_control), "{escaped:?}");
        assert!(!escaped.contains('\n'));
    }
}
