//! A JSON array streamed element by element (Gemini's `streamGenerateContent` without `alt=sse`):
//! `[{...},\r\n{...}]`. Each top-level element becomes a frame as soon as it is complete.

use super::Frame;

/// Largest element kept; a larger one is dropped and counted.
const MAX_ELEMENT: usize = 16 << 20;

/// An incremental splitter of a top-level JSON array.
#[derive(Debug, Default)]
pub struct JsonArrayParser {
    element: Vec<u8>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    started: bool,
    dropped: u64,
}

impl JsonArrayParser {
    /// Feeds bytes split anywhere; complete elements are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) {
        for &b in bytes {
            if !self.started {
                if b == b'[' {
                    self.started = true;
                }
                continue;
            }
            if self.depth == 0 {
                if self.in_string {
                    // A top-level string element (not a chunk): skipped, `]` inside it included.
                    match (self.escaped, b) {
                        (true, _) => self.escaped = false,
                        (false, b'\\') => self.escaped = true,
                        (false, b'"') => self.in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => {
                        self.depth = 1;
                        self.element.clear();
                        self.element.push(b);
                    }
                    b']' => self.started = false,
                    _ => {}
                }
                continue;
            }
            if self.element.len() < MAX_ELEMENT {
                self.element.push(b);
            }
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        if self.element.len() >= MAX_ELEMENT {
                            self.dropped += 1;
                        } else {
                            out.push(Frame {
                                event: None,
                                data: std::mem::take(&mut self.element),
                                exception: false,
                            });
                        }
                        self.element.clear();
                    }
                }
                _ => {}
            }
        }
    }

    /// Ends the input; an unfinished element counts as dropped.
    pub fn finish(&mut self, _out: &mut Vec<Frame>) {
        if self.depth > 0 {
            self.dropped += 1;
        }
        self.depth = 0;
        self.element.clear();
    }

    /// Elements dropped (too large or unfinished).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_split_anywhere() {
        let input = b"[{\"a\": \"x]}\\\"\"},\r\n{\"b\": [1, {\"c\": 2}]}\n]";
        for cut in 1..input.len() {
            let mut p = JsonArrayParser::default();
            let mut out = Vec::new();
            for piece in input.chunks(cut) {
                p.push(piece, &mut out);
            }
            p.finish(&mut out);
            let items: Vec<&[u8]> = out.iter().map(|f| f.data.as_slice()).collect();
            assert_eq!(
                items,
                vec![&b"{\"a\": \"x]}\\\"\"}"[..], b"{\"b\": [1, {\"c\": 2}]}"],
                "cut {cut}"
            );
            assert_eq!(p.dropped(), 0);
        }
    }
}
