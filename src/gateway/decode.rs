//! Decompression of the tee's copy of a response body (`content-encoding` gzip, deflate, br,
//! zstd). The client receives the upstream's bytes untouched; only specter's copy is decoded.

use std::io::Write;

/// An incremental decoder for one content encoding.
pub enum Decoder {
    /// gzip.
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    /// zlib-wrapped deflate (what HTTP calls `deflate`).
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    /// Brotli.
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    /// Zstandard.
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Decoder::Gzip(_) => "gzip",
            Decoder::Deflate(_) => "deflate",
            Decoder::Brotli(_) => "br",
            Decoder::Zstd(_) => "zstd",
        };
        write!(f, "Decoder({name})")
    }
}

/// Why an encoding cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The encoding is not one specter decodes.
    #[error("unsupported content-encoding `{0}`")]
    Unsupported(String),
    /// The data is corrupt.
    #[error("cannot decode the response body: {0}")]
    Corrupt(#[from] std::io::Error),
}

impl Decoder {
    /// A decoder for a `content-encoding` value; `Ok(None)` for `identity` or none.
    pub fn for_encoding(encoding: &str) -> Result<Option<Decoder>, DecodeError> {
        Ok(Some(match encoding.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => return Ok(None),
            "gzip" | "x-gzip" => Decoder::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
            "deflate" => Decoder::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
            "br" => Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096))),
            "zstd" => Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new())?),
            other => return Err(DecodeError::Unsupported(other.to_string())),
        }))
    }

    /// Decodes a piece; returns what it decoded so far.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
        match self {
            Decoder::Gzip(d) => {
                d.write_all(data)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Deflate(d) => {
                d.write_all(data)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Brotli(d) => {
                d.write_all(data)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Zstd(d) => {
                d.write_all(data)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(encoding: &str, compressed: Vec<u8>, expected: &[u8]) {
        for cut in [1, 7, 64, compressed.len()] {
            let mut decoder = Decoder::for_encoding(encoding).unwrap().unwrap();
            let mut out = Vec::new();
            for piece in compressed.chunks(cut) {
                out.extend(decoder.feed(piece).unwrap());
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
}
