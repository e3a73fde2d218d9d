//! Server-sent events, parsed incrementally as the WHATWG spec describes: `event:` and multi-line
//! `data:` fields, `:` comments, `\n`, `\r\n` and `\r` line endings, and (unlike a browser) a
//! final event without a trailing blank line.

use std::borrow::Cow;

use super::Frame;

/// Longest line kept; a longer one is dropped and counted.
const MAX_LINE: usize = 16 << 20;

/// An incremental SSE parser.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    skip_lf: bool,
    /// The current line went over the limit: its remaining bytes are dropped.
    overlong: bool,
    /// The byte order mark check at the start of the stream is done.
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    data_overflow: bool,
    dropped: u64,
}

impl SseParser {
    /// Feeds bytes split anywhere; complete events are appended to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Frame>) {
        if bytes.is_empty() {
            return;
        }
        if !self.started {
            // One leading byte order mark is ignored (it may arrive split across pushes).
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let seen = self.line.len();
            let candidate: Vec<u8> = self
                .line
                .iter()
                .chain(bytes.iter())
                .take(3)
                .copied()
                .collect();
            if BOM.starts_with(&candidate) && candidate.len() < 3 {
                self.line.extend_from_slice(bytes);
                return;
            }
            self.started = true;
            if candidate == BOM {
                bytes = bytes.get(3 - seen..).unwrap_or_default();
                self.line.clear();
            }
        }
        if self.skip_lf {
            self.skip_lf = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(i) = memchr::memchr2(b'\r', b'\n', bytes) {
            let (head, tail) = bytes.split_at(i);
            if self.line.is_empty() && !self.overlong && head.len() <= MAX_LINE {
                // The whole line is in this push: read it in place.
                self.line_done(head, out);
            } else {
                self.extend_line(head);
                self.end_line(out);
            }
            match tail {
                [b'\r', b'\n', rest @ ..] => bytes = rest,
                [b'\r'] => {
                    self.skip_lf = true;
                    bytes = &[];
                }
                [_, rest @ ..] => bytes = rest,
                [] => bytes = &[],
            }
        }
        self.extend_line(bytes);
    }

    /// Ends the input: a pending line and a pending event are delivered.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        if !self.started && self.line.starts_with(b"\xEF\xBB\xBF") {
            self.line.clear();
        }
        if !self.line.is_empty() || self.overlong {
            self.end_line(out);
        }
        self.dispatch(out);
    }

    /// Lines dropped for being too long.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn extend_line(&mut self, bytes: &[u8]) {
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
        if self.overlong {
            // The rest of an overlong line is dropped with it, not read as a line of its own.
            self.overlong = false;
            self.line.clear();
            return;
        }
        let line = std::mem::take(&mut self.line);
        self.line_done(&line, out);
        self.line = line;
        self.line.clear();
    }

    /// Reads one complete line.
    fn line_done(&mut self, line: &[u8], out: &mut Vec<Frame>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(b":") {
            return;
        }
        // Split on the bytes: `:` and the space after it are ASCII, so this is the split of the
        // decoded text.
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let value = line.get(i + 1..).unwrap_or_default();
                (
                    line.get(..i).unwrap_or_default(),
                    value.strip_prefix(b" ").unwrap_or(value),
                )
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                let value = text(value);
                if self.data.len() + value.len() > MAX_LINE {
                    // An event's data is capped like a line: the event is dropped.
                    self.data_overflow = true;
                } else {
                    self.data.reserve(value.len() + 1);
                    self.data.push_str(&value);
                    self.data.push('\n');
                }
                self.has_data = true;
            }
            b"event" => self.event = Some(text(value).into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Frame>) {
        let event = self.event.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        if std::mem::take(&mut self.data_overflow) {
            self.data.clear();
            self.dropped += 1;
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        out.push(Frame {
            event: event.filter(|e| !e.is_empty()),
            data: data.into_bytes(),
            exception: false,
        });
    }
}

/// Bytes as text, invalid UTF-8 replaced (checked at full speed first: streams are valid UTF-8).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], cut: usize) -> Vec<Frame> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for piece in input.chunks(cut.max(1)) {
            p.push(piece, &mut out);
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn events_comments_and_line_endings() {
        let input = b": keep-alive\r\nevent: message_start\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: x\rdata: y\r\rdata: [DONE]\n\nevent: tail\ndata: last";
        let expected = vec![
            Frame {
                event: Some("message_start".into()),
                data: b"{\"a\":\n1}".to_vec(),
                exception: false,
            },
            Frame {
                event: None,
                data: b"x\ny".to_vec(),
                exception: false,
            },
            Frame {
                event: None,
                data: b"[DONE]".to_vec(),
                exception: false,
            },
            Frame {
                event: Some("tail".into()),
                data: b"last".to_vec(),
                exception: false,
            },
        ];
        for cut in 1..input.len() {
            assert_eq!(parse_in_pieces(input, cut), expected, "cut {cut}");
        }
    }

    #[test]
    fn utf8_split_inside_a_character() {
        let input = "data: héllo 😀\n\n".as_bytes();
        for cut in 1..input.len() {
            let frames = parse_in_pieces(input, cut);
            assert_eq!(frames[0].data, "héllo 😀".as_bytes(), "cut {cut}");
        }
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert!(parse_in_pieces(b"event: ping\n\n", 3).is_empty());
    }
}
