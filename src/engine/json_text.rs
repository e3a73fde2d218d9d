//! JSON text written straight into a `String`, byte for byte as `serde_json`'s compact serialiser
//! writes it (same escapes, number formatting and member order). The message attributes are built
//! this way, rather than as a value tree that is serialised afterwards.

use std::cell::RefCell;
use std::fmt::Write as _;

use serde_json::Value as Json;

/// Appends a value as compact JSON text.
pub fn write_value(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        // `Number`'s `Display` is the serialiser's number format (itoa, and the shortest float).
        Json::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Json::String(s) => write_str(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// Appends `"key":` (after a comma unless the object was just opened). Keys are the static
/// names of the conventions' fields (`role`, `parts`, `content`...): plain text, written as it is.
pub fn write_key(out: &mut String, key: &'static str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

/// Builds a JSON array in a buffer reused by the thread's later calls (so long texts do not grow a
/// new string step by step each time): `f` writes the items between the brackets. Returns the
/// array as a string of its own, or `None` when it is empty.
pub fn build_array(f: impl FnOnce(&mut String)) -> Option<String> {
    /// A buffer larger than this is not kept for the next call.
    const KEEP: usize = 256 << 10;
    thread_local! {
        static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
    }
    let finish = |buffer: &mut String| {
        f(buffer);
        (buffer.len() > 1).then(|| {
            let mut text = String::with_capacity(buffer.len() + 1);
            text.push_str(buffer);
            text.push(']');
            text
        })
    };
    BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            buffer.push('[');
            let text = finish(&mut buffer);
            if buffer.capacity() > KEEP {
                *buffer = String::new();
            }
            text
        }
        // Only when `f` itself builds text: it gets a buffer of its own.
        Err(_) => finish(&mut String::from("[")),
    })
}

/// Appends a string literal: quotes, backslashes and control characters escaped, nothing else.
pub fn write_str(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let mut rest = text;
    loop {
        let clean = clean_prefix(rest.as_bytes());
        // Only ASCII bytes are escaped, so `clean` is on a character boundary.
        out.push_str(rest.get(..clean).unwrap_or_default());
        let Some(&byte) = rest.as_bytes().get(clean) else {
            break;
        };
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        rest = rest.get(clean + 1..).unwrap_or_default();
    }
    out.push('"');
}

/// Whether a byte is escaped in a JSON string.
fn escaped(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The length of the longest prefix without a byte to escape, eight bytes at a time.
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut i = 0;
    for chunk in bytes.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk).map(u64::from_ne_bytes) else {
            break;
        };
        // A byte below 0x20, or equal to `"` or `\` (the classic "has zero byte" test).
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let flagged = (word.wrapping_sub(ONES * 0x20) & !word)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash);
        if flagged & HIGH != 0 {
            break;
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(|b| !escaped(*b)) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_text_as_serde_json() {
        let values = [
            json!(null),
            json!(true),
            json!([false, 0, -1, 18446744073709551615u64, -9223372036854775808i64]),
            json!([0.1, -0.0, 1e21, 1.5e-7, 123456.789, f64::MAX, f64::MIN_POSITIVE, 2.0]),
            json!("plain"),
            json!("quote \" backslash \\ slash / tab \t nl \n cr \r bs \u{8} ff \u{c} nul \u{0} us \u{1f} del \u{7f}"),
            json!("héllo 😀 \u{2028}"),
            json!("0123456789abcdef\"0123456789abcdef\u{1}01234567\\"),
            json!("\u{7f}\u{80}\u{ff} long enough to take the eight-byte path ~~~~ \u{1f}"),
            json!({"b": 1, "a": [{"z": "x", "y": null}], "": {}, "k\"ey": []}),
        ];
        for value in values {
            let mut out = String::new();
            write_value(&mut out, &value);
            assert_eq!(out, serde_json::to_string(&value).unwrap());
        }
    }

    #[test]
    fn keys_after_commas() {
        let mut out = String::from("{");
        write_key(&mut out, "a");
        write_value(&mut out, &json!(1));
        write_key(&mut out, "b");
        out.push('[');
        write_value(&mut out, &json!("x"));
        out.push_str("]}");
        assert_eq!(out, r#"{"a":1,"b":["x"]}"#);
    }
}
