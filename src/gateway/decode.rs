//! Decompression of the tee's copy of a response body (`content-encoding` gzip, deflate, br,
//! zstd). The client receives the upstream's bytes untouched; only specter's copy is decoded.
//!
//! A few compressed bytes can stand for gigabytes, so decoding is bounded by its output, not by
//! its input: the decoder holds what it is fed and hands out at most [`MAX_STEP`] decoded bytes
//! per call, stops for good once it has handed out its limit ([`Decoder::set_limit`]), and never
//! lets a stream ask for a larger history window than HTTP's codings allow (Brotli's standard
//! 16 MiB, never the large-window extension; Zstandard's 8 MiB, what RFC 9659 prescribes for
//! the `zstd` coding). One decoder therefore costs a bounded amount of memory whatever it reads.

use std::io::{BufRead, ErrorKind, Read};

use brotli::{BrotliDecompressStream, BrotliResult, BrotliState, HeapAlloc, HuffmanCode};
use flate2::{Decompress, FlushDecompress, Status};
use zstd::stream::raw::{DParameter, Operation as _};

/// Most decoded bytes one call to [`Decoder::feed`] or [`Decoder::next_piece`] hands out.
pub const MAX_STEP: usize = 64 << 10;

/// Size of the first output step; it doubles, up to [`MAX_STEP`], only while steps come out
/// full, so the usual small response never needs the larger buffer.
const FIRST_STEP: usize = 4 << 10;

/// Largest Zstandard window (log2): 8 MiB, the most the HTTP `zstd` coding may use.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// The Brotli decoder's state, on the heap allocator.
type BrotliDecoder = BrotliState<HeapAlloc<u8>, HeapAlloc<u32>, HeapAlloc<HuffmanCode>>;

/// An incremental decoder for one content encoding, bounded in what it hands out per call and in
/// all.
pub struct Decoder {
    codec: Codec,
    /// The output buffer of one step.
    out: Vec<u8>,
    /// Decoded bytes handed out so far.
    decoded: usize,
    /// Most decoded bytes ever handed out.
    limit: usize,
}

/// One encoding's decompressor with the compressed input it holds.
enum Codec {
    /// gzip, any number of members.
    Gzip(Box<flate2::bufread::MultiGzDecoder<Input>>),
    /// zlib-wrapped deflate (what HTTP calls `deflate`).
    Deflate(Box<Decompress>, Input),
    /// Brotli.
    Brotli(Box<BrotliDecoder>, Input),
    /// Zstandard.
    Zstd(Box<zstd::stream::raw::Decoder<'static>>, Input),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.codec {
            Codec::Gzip(_) => "gzip",
            Codec::Deflate(..) => "deflate",
            Codec::Brotli(..) => "br",
            Codec::Zstd(..) => "zstd",
        };
        write!(f, "Decoder({name}, {} decoded)", self.decoded)
    }
}

/// Why an encoding cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The encoding is not one specter decodes.
    #[error("unsupported content-encoding `{0}`")]
    Unsupported(String),
    /// The data is corrupt.
    #[error("cannot decode the response body")]
    Corrupt(#[from] std::io::Error),
}

/// A corrupt-data error with this message.
fn corrupt(message: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DecodeError {
    DecodeError::Corrupt(std::io::Error::new(ErrorKind::InvalidData, message))
}

impl Decoder {
    /// A decoder for a `content-encoding` value; `Ok(None)` for `identity` or none. It has no
    /// limit in all until [`Decoder::set_limit`] gives it one.
    pub fn for_encoding(encoding: &str) -> Result<Option<Decoder>, DecodeError> {
        let codec = match encoding.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => return Ok(None),
            "gzip" | "x-gzip" => Codec::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(
                Input::default(),
            ))),
            "deflate" => Codec::Deflate(Box::new(Decompress::new(true)), Input::default()),
            "br" => Codec::Brotli(
                Box::new(BrotliState::new_strict(
                    HeapAlloc::default(),
                    HeapAlloc::default(),
                    HeapAlloc::default(),
                )),
                Input::default(),
            ),
            "zstd" => Codec::Zstd(Box::new(zstd_decoder()?), Input::default()),
            other => return Err(DecodeError::Unsupported(other.to_string())),
        };
        Ok(Some(Decoder {
            codec,
            out: Vec::new(),
            decoded: 0,
            limit: usize::MAX,
        }))
    }

    /// Stops the decoder once it has handed out `limit` decoded bytes in all: past that it hands
    /// out nothing more and lets go of the input it holds.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        if self.is_spent() {
            self.codec.input().release();
        }
    }

    /// Decoded bytes handed out so far.
    pub fn decoded(&self) -> usize {
        self.decoded
    }

    /// Whether the decoder has handed out its limit and will hand out nothing more.
    pub fn is_spent(&self) -> bool {
        self.decoded >= self.limit
    }

    /// Takes the next piece of the body and returns the first piece of what it decodes to, at
    /// most `MAX_STEP` (64 KiB) bytes; call [`Decoder::next_piece`] until it returns nothing for the
    /// rest. What is not decoded yet stays held (ignored once the decoder is spent).
    pub fn feed(&mut self, data: &[u8]) -> Result<&[u8], DecodeError> {
        if !self.is_spent() {
            self.codec.input().push(data);
        }
        self.next_piece()
    }

    /// The next piece of what the held input decodes to, at most `MAX_STEP` (64 KiB) bytes and never
    /// past the limit; empty once the held input is decoded (or the decoder is spent).
    pub fn next_piece(&mut self) -> Result<&[u8], DecodeError> {
        let room = self.limit.saturating_sub(self.decoded);
        if room == 0 {
            self.codec.input().release();
            return Ok(&[]);
        }
        if self.out.is_empty() {
            self.out = vec![0; FIRST_STEP];
        }
        let size = self.out.len();
        let window = self.out.get_mut(..size.min(room)).unwrap_or_default();
        let written = self.codec.step(window)?.min(size);
        if written == size && size < MAX_STEP {
            // Full steps: the body decodes to more than a small answer, so take larger steps.
            self.out.resize((size * 2).min(MAX_STEP), 0);
        }
        self.decoded += written;
        if self.is_spent() {
            self.codec.input().release();
        }
        Ok(self.out.get(..written).unwrap_or_default())
    }
}

/// A Zstandard decoder that refuses frames asking for a window over 8 MiB.
fn zstd_decoder() -> Result<zstd::stream::raw::Decoder<'static>, DecodeError> {
    let mut decoder = zstd::stream::raw::Decoder::new()?;
    decoder.set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))?;
    Ok(decoder)
}

impl Codec {
    /// The compressed input held.
    fn input(&mut self) -> &mut Input {
        match self {
            Codec::Gzip(d) => d.get_mut(),
            Codec::Deflate(_, input) | Codec::Brotli(_, input) | Codec::Zstd(_, input) => input,
        }
    }

    /// Decodes held input into `out`; returns how many bytes it wrote (0: it needs more input).
    fn step(&mut self, out: &mut [u8]) -> Result<usize, DecodeError> {
        match self {
            Codec::Gzip(d) => gunzip(d, out),
            Codec::Deflate(d, input) => inflate(d, input, out),
            Codec::Brotli(d, input) => unbrotli(d, input, out),
            Codec::Zstd(d, input) => unzstd(d, input, out),
        }
    }
}

/// One gzip step; the held input running dry shows as `WouldBlock`, which the gzip reader stops
/// at and resumes from.
fn gunzip(
    d: &mut flate2::bufread::MultiGzDecoder<Input>,
    out: &mut [u8],
) -> Result<usize, DecodeError> {
    match d.read(out) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(DecodeError::Corrupt(e)),
    }
}

/// One zlib step.
fn inflate(d: &mut Decompress, input: &mut Input, out: &mut [u8]) -> Result<usize, DecodeError> {
    let (before_in, before_out) = (d.total_in(), d.total_out());
    let status = d
        .decompress(input.rest(), out, FlushDecompress::None)
        .map_err(corrupt)?;
    input.advance(usize::try_from(d.total_in() - before_in).unwrap_or(usize::MAX));
    let written = usize::try_from(d.total_out() - before_out).unwrap_or(0);
    if status == Status::StreamEnd && written == 0 && !input.rest().is_empty() {
        return Err(corrupt("data after the end of the deflate stream"));
    }
    Ok(written)
}

/// One Brotli step.
fn unbrotli(
    d: &mut BrotliDecoder,
    input: &mut Input,
    out: &mut [u8],
) -> Result<usize, DecodeError> {
    let rest = input.rest();
    let (mut available_in, mut input_offset) = (rest.len(), 0);
    let (mut available_out, mut written, mut total) = (out.len(), 0, 0);
    let result = BrotliDecompressStream(
        &mut available_in,
        &mut input_offset,
        rest,
        &mut available_out,
        &mut written,
        out,
        &mut total,
        d,
    );
    input.advance(input_offset);
    match result {
        BrotliResult::ResultFailure => Err(corrupt("invalid brotli stream")),
        BrotliResult::ResultSuccess if written == 0 && !input.rest().is_empty() => {
            Err(corrupt("data after the end of the brotli stream"))
        }
        _ => Ok(written),
    }
}

/// One Zstandard step (frames one after another are one body).
fn unzstd(
    d: &mut zstd::stream::raw::Decoder<'static>,
    input: &mut Input,
    out: &mut [u8],
) -> Result<usize, DecodeError> {
    let status = d.run_on_buffers(input.rest(), out)?;
    input.advance(status.bytes_read);
    Ok(status.bytes_written)
}

/// Compressed bytes fed and not decoded yet. As a reader it runs dry with `WouldBlock` rather
/// than an end, since more of the body may come.
#[derive(Debug, Default)]
struct Input {
    bytes: Vec<u8>,
    /// Where the bytes not consumed yet start.
    start: usize,
}

impl Input {
    /// Holds more bytes after those not consumed yet.
    fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.bytes.drain(..self.start.min(self.bytes.len()));
            self.start = 0;
        }
        self.bytes.extend_from_slice(data);
    }

    /// The bytes not consumed yet.
    fn rest(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }

    /// Marks `n` more bytes consumed.
    fn advance(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.bytes.len());
    }

    /// Lets go of everything held.
    fn release(&mut self) {
        self.bytes = Vec::new();
        self.start = 0;
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.fill_buf()?.read(buf)?;
        self.advance(n);
        Ok(n)
    }
}

impl BufRead for Input {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.rest().is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(self.rest())
    }

    fn consume(&mut self, n: usize) {
        self.advance(n);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Everything the decoder has for one piece: its pieces, each checked against the step bound.
    fn drain(decoder: &mut Decoder, piece: &[u8], out: &mut Vec<u8>) {
        let mut step = decoder.feed(piece).unwrap().to_vec();
        for _ in 0..1_000_000 {
            assert!(
                step.len() <= MAX_STEP,
                "one step handed out {} bytes",
                step.len()
            );
            if step.is_empty() {
                return;
            }
            out.extend_from_slice(&step);
            step = decoder.next_piece().unwrap().to_vec();
        }
        panic!("the decoder never ran dry");
    }

    fn roundtrip(encoding: &str, compressed: Vec<u8>, expected: &[u8]) {
        for cut in [1, 7, 64, compressed.len()] {
            let mut decoder = Decoder::for_encoding(encoding).unwrap().unwrap();
            let mut out = Vec::new();
            for piece in compressed.chunks(cut) {
                drain(&mut decoder, piece, &mut out);
            }
            assert_eq!(out, expected, "{encoding} cut {cut}");
        }
    }

    #[test]
    fn every_encoding_decodes_in_pieces() {
        let text = b"data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\n".repeat(50);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        roundtrip("gzip", gz.finish().unwrap(), &text);
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zl.write_all(&text).unwrap();
        roundtrip("deflate", zl.finish().unwrap(), &text);
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(&text).unwrap();
        }
        roundtrip("br", br, &text);
        roundtrip("zstd", zstd::encode_all(&text[..], 3).unwrap(), &text);
        assert!(Decoder::for_encoding("identity").unwrap().is_none());
        assert!(matches!(
            Decoder::for_encoding("compress"),
            Err(DecodeError::Unsupported(_))
        ));
    }

    /// 1 MiB of zeros, written `mib` times into `encoder`: the test never holds the plain text.
    fn zeros_into(encoder: &mut impl Write, mib: usize) {
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..mib {
            encoder.write_all(&zeros).unwrap();
        }
    }

    /// `content-encoding` and a body of a few hundred bytes to a few hundred KiB that decodes to
    /// 256 MiB of zeros, for each encoding; built once.
    fn bombs() -> &'static [(&'static str, Vec<u8>)] {
        static BOMBS: std::sync::OnceLock<Vec<(&'static str, Vec<u8>)>> =
            std::sync::OnceLock::new();
        BOMBS.get_or_init(|| {
            let member = {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                zeros_into(&mut gz, 64);
                gz.finish().unwrap()
            };
            let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            zeros_into(&mut zl, 256);
            let mut br = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut br, 1 << 16, 5, 24);
                zeros_into(&mut w, 256);
            }
            let mut zs = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
            zeros_into(&mut zs, 256);
            vec![
                ("gzip", member.repeat(4)),
                ("deflate", zl.finish().unwrap()),
                ("br", br),
                ("zstd", zs.finish().unwrap()),
            ]
        })
    }

    #[test]
    fn a_bomb_is_handed_out_in_bounded_steps_and_stops_at_the_limit() {
        const LIMIT: usize = (8 << 20) + 12_345;
        for (encoding, bomb) in bombs() {
            assert!(
                bomb.len() < 512 << 10,
                "{encoding} bomb of {} bytes",
                bomb.len()
            );
            let mut decoder = Decoder::for_encoding(encoding).unwrap().unwrap();
            decoder.set_limit(LIMIT);
            let mut out = Vec::new();
            let mut fed = 0;
            for piece in bomb.chunks(64) {
                drain(&mut decoder, piece, &mut out);
                fed += piece.len();
                if decoder.is_spent() {
                    break;
                }
            }
            assert_eq!(out.len(), LIMIT, "{encoding}");
            assert_eq!(decoder.decoded(), LIMIT, "{encoding}");
            assert!(out.iter().all(|&b| b == 0), "{encoding} decodes to zeros");
            assert!(fed < bomb.len(), "{encoding} stopped before the end");
            // Spent: more input is not even held, and nothing more comes out.
            assert!(decoder.feed(&bomb[fed..]).unwrap().is_empty());
            assert!(decoder.next_piece().unwrap().is_empty());
            assert_eq!(decoder.codec.input().bytes.capacity(), 0, "{encoding}");
        }
    }

    #[test]
    fn a_whole_bomb_fed_at_once_still_comes_out_in_bounded_steps() {
        for (encoding, bomb) in bombs() {
            let mut decoder = Decoder::for_encoding(encoding).unwrap().unwrap();
            decoder.set_limit(1 << 20);
            let first = decoder.feed(bomb).unwrap().len();
            assert!(first > 0 && first <= MAX_STEP, "{encoding}: {first}");
            let mut total = first;
            for _ in 0..1_000 {
                let n = decoder.next_piece().unwrap().len();
                assert!(n <= MAX_STEP, "{encoding}: {n}");
                if n == 0 {
                    break;
                }
                total += n;
            }
            assert_eq!(total, 1 << 20, "{encoding}");
        }
    }

    #[test]
    fn steps_grow_only_while_they_come_out_full() {
        let text = vec![b'a'; 3000];
        let mut decoder = Decoder::for_encoding("zstd").unwrap().unwrap();
        let out = decoder
            .feed(&zstd::encode_all(&text[..], 3).unwrap())
            .unwrap()
            .to_vec();
        assert_eq!(out, text);
        assert_eq!(decoder.out.len(), FIRST_STEP);
    }

    #[test]
    fn zstd_frames_asking_for_a_window_over_8_mib_are_refused() {
        let mut zs = zstd::stream::write::Encoder::new(Vec::new(), 22).unwrap();
        zs.window_log(27).unwrap();
        zs.long_distance_matching(true).unwrap();
        zeros_into(&mut zs, 1);
        let frame = zs.finish().unwrap();
        let mut decoder = Decoder::for_encoding("zstd").unwrap().unwrap();
        let error = decoder.feed(&frame).unwrap_err();
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        assert!(
            cause
                .as_deref()
                .is_some_and(|c| c.contains("Frame requires too much memory")),
            "{error}: {cause:?}"
        );
        // The largest window HTTP's zstd coding allows decodes.
        let mut zs = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        zs.window_log(23).unwrap();
        zeros_into(&mut zs, 1);
        let frame = zs.finish().unwrap();
        let mut decoder = Decoder::for_encoding("zstd").unwrap().unwrap();
        let mut out = Vec::new();
        drain(&mut decoder, &frame, &mut out);
        assert_eq!(out.len(), 1 << 20);
    }

    #[test]
    fn large_window_brotli_is_refused() {
        let params = brotli::enc::BrotliEncoderParams {
            large_window: true,
            lgwin: 28,
            quality: 5,
            ..Default::default()
        };
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::with_params(&mut br, 4096, &params);
            zeros_into(&mut w, 1);
        }
        let mut decoder = Decoder::for_encoding("br").unwrap().unwrap();
        assert!(matches!(decoder.feed(&br), Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn trailing_bytes_after_the_end_are_an_error_not_a_stall() {
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zl.write_all(b"{}").unwrap();
        let mut deflate = zl.finish().unwrap();
        deflate.extend_from_slice(b"garbage");
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(b"{}").unwrap();
        }
        br.extend_from_slice(b"garbage");
        for (encoding, body) in [("deflate", deflate), ("br", br)] {
            let mut decoder = Decoder::for_encoding(encoding).unwrap().unwrap();
            assert_eq!(decoder.feed(&body).unwrap(), b"{}", "{encoding}");
            assert!(
                matches!(decoder.next_piece(), Err(DecodeError::Corrupt(_))),
                "{encoding}"
            );
        }
    }
}
