//! Newline-delimited JSON, parsed incrementally: one frame per non-blank line.

use super::Frame;

/// Longest line kept; a longer one is dropped and counted.
const MAX_LINE: usize = 16 << 20;

/// An incremental NDJSON splitter.
#[derive(Debug, Default)]
pub struct NdjsonParser {
    line: Vec<u8>,
    dropped: u64,
    overlong: bool,
}

impl NdjsonParser {
    /// Feeds bytes split anywhere; complete lines are appended to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Frame>) {
        while let Some(i) = bytes.iter().position(|b| *b == b'\n') {
            let (head, tail) = bytes.split_at(i);
            self.extend(head);
            self.end_line(out);
            bytes = tail.get(1..).unwrap_or_default();
        }
        self.extend(bytes);
    }

    /// Ends the input: a last line without a newline is delivered.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        self.end_line(out);
    }

    /// Lines dropped for being too long.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        if self.line.len() + bytes.len() > MAX_LINE {
            self.line.clear();
            self.overlong = true;
            self.dropped += 1;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn end_line(&mut self, out: &mut Vec<Frame>) {
        self.overlong = false;
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        out.push(Frame {
            event: None,
            data: line,
            exception: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_anywhere() {
        let input = b"{\"a\":1}\r\n\n{\"b\":2}\n{\"c\":3}";
        for cut in 1..input.len() {
            let mut p = NdjsonParser::default();
            let mut out = Vec::new();
            for piece in input.chunks(cut) {
                p.push(piece, &mut out);
            }
            p.finish(&mut out);
            let lines: Vec<&[u8]> = out.iter().map(|f| f.data.as_slice()).collect();
            assert_eq!(
                lines,
                vec![&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"],
                "cut {cut}"
            );
        }
    }
}
