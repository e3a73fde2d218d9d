//! The AWS binary event stream (`application/vnd.amazon.eventstream`), parsed incrementally:
//! prelude (total length, headers length, CRC32), headers, payload, message CRC32. The event name
//! is the `:event-type` header; an `exception` message carries `:exception-type`.

use super::Frame;

/// Largest message accepted (the format allows 16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// An incremental event-stream parser.
#[derive(Debug, Default)]
pub struct EventStreamParser {
    buf: Vec<u8>,
    broken: bool,
    bad_messages: u64,
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

impl EventStreamParser {
    /// Feeds bytes split anywhere; complete messages are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) {
        if self.broken {
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(consumed) = self.next_message(start, out) {
            start += consumed;
        }
        self.buf.drain(..start.min(self.buf.len()));
    }

    /// Ends the input; leftover bytes count as one bad message.
    pub fn finish(&mut self, _out: &mut Vec<Frame>) {
        if !self.buf.is_empty() && !self.broken {
            self.bad_messages += 1;
        }
        self.buf.clear();
    }

    /// Messages dropped (CRC mismatch, malformed headers, truncation).
    pub fn dropped(&self) -> u64 {
        self.bad_messages
    }

    /// Parses the message at `start`; returns the bytes consumed, or `None` when more are needed.
    fn next_message(&mut self, start: usize, out: &mut Vec<Frame>) -> Option<usize> {
        let msg = self.buf.get(start..)?;
        let total = be_u32(msg, 0)? as usize;
        let headers_len = be_u32(msg, 4)? as usize;
        let prelude_crc = be_u32(msg, 8)?;
        if crc32fast::hash(msg.get(..8)?) != prelude_crc
            || !(16..=MAX_MESSAGE).contains(&total)
            || headers_len + 16 > total
        {
            // Without a trustworthy length there is no way to find the next message.
            self.broken = true;
            self.bad_messages += 1;
            return None;
        }
        let msg = msg.get(..total)?;
        let message_crc = be_u32(msg, total - 4)?;
        if crc32fast::hash(msg.get(..total - 4)?) != message_crc {
            self.bad_messages += 1;
            return Some(total);
        }
        let headers = msg.get(12..12 + headers_len)?;
        let payload = msg.get(12 + headers_len..total - 4)?;
        match parse_headers(headers) {
            Some(headers) => {
                let get = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                let exception = get(":message-type").as_deref() == Some("exception");
                let event = if exception {
                    get(":exception-type")
                } else {
                    get(":event-type")
                };
                out.push(Frame {
                    event,
                    data: payload.to_vec(),
                    exception,
                });
            }
            None => self.bad_messages += 1,
        }
        Some(total)
    }
}

/// Header name → string value (non-string values are skipped).
fn parse_headers(mut bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::new();
    while let Some((&name_len, rest)) = bytes.split_first() {
        let name = rest.get(..name_len as usize)?;
        let rest = rest.get(name_len as usize..)?;
        let (&kind, rest) = rest.split_first()?;
        let (value, rest) = match kind {
            0 | 1 => (None, rest),
            2 => (None, rest.get(1..)?),
            3 => (None, rest.get(2..)?),
            4 => (None, rest.get(4..)?),
            5 | 8 => (None, rest.get(8..)?),
            9 => (None, rest.get(16..)?),
            6 | 7 => {
                let len = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
                let value = rest.get(2..2 + len)?;
                let text = (kind == 7).then(|| String::from_utf8_lossy(value).into_owned());
                (text, rest.get(2 + len..)?)
            }
            _ => return None,
        };
        if let Some(value) = value {
            headers.push((String::from_utf8_lossy(name).into_owned(), value));
        }
        bytes = rest;
    }
    Some(headers)
}

/// Encodes one event message (used by tests and the gateway's mock upstream).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut encoded_headers = Vec::new();
    for (name, value) in headers {
        encoded_headers.push(name.len() as u8);
        encoded_headers.extend_from_slice(name.as_bytes());
        encoded_headers.push(7);
        encoded_headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        encoded_headers.extend_from_slice(value.as_bytes());
    }
    let total = 16 + encoded_headers.len() + payload.len();
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_be_bytes());
    msg.extend_from_slice(&(encoded_headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&msg);
    msg.extend_from_slice(&prelude_crc.to_be_bytes());
    msg.extend_from_slice(&encoded_headers);
    msg.extend_from_slice(payload);
    let crc = crc32fast::hash(&msg);
    msg.extend_from_slice(&crc.to_be_bytes());
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_split_anywhere_and_crc_checked() {
        let mut input = encode(
            &[(":event-type", "messageStart"), (":message-type", "event")],
            b"{\"role\":\"assistant\"}",
        );
        input.extend(encode(
            &[
                (":exception-type", "throttlingException"),
                (":message-type", "exception"),
            ],
            b"{\"message\":\"slow down\"}",
        ));
        for cut in 1..input.len() {
            let mut p = EventStreamParser::default();
            let mut out = Vec::new();
            for piece in input.chunks(cut) {
                p.push(piece, &mut out);
            }
            p.finish(&mut out);
            assert_eq!(out.len(), 2, "cut {cut}");
            assert_eq!(out[0].event.as_deref(), Some("messageStart"));
            assert_eq!(out[0].data, b"{\"role\":\"assistant\"}");
            assert!(out[1].exception);
            assert_eq!(out[1].event.as_deref(), Some("throttlingException"));
            assert_eq!(p.dropped(), 0);
        }
        let mut corrupt = input.clone();
        let last = corrupt.len() - 10;
        corrupt[last] ^= 0xff;
        let mut p = EventStreamParser::default();
        let mut out = Vec::new();
        p.push(&corrupt, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(p.dropped(), 1);
    }
}
