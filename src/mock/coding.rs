//! The mock's `x-mock-encoding`: answers compressed with a `Content-Encoding` the gateway did
//! not ask for (it sends `Accept-Encoding: identity`; some providers ignore it). Whole bodies
//! are compressed at once; a stream goes through one compressor for its whole life, flushed
//! (a zlib sync flush) after every event, so each event can be decoded as soon as it arrives,
//! as a real gzip-on-the-fly server does it.
//!
//! Invariants: the encoded bytes of a whole body, or of a stream's pieces plus its
//! [`Compressor::finish`], are one valid gzip member or zlib stream; `br` sends the bytes as
//! they are, only labelled (the gateway must refuse that coding, whatever the bytes).
//! Not here: choosing when to encode (`exchange`), sockets.

use std::io::Write;

use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};

use super::ask::Encoding;

/// A whole body in `enc`.
pub(super) fn encode(enc: Encoding, body: &[u8]) -> Vec<u8> {
    let mut c = Compressor::new(enc);
    let mut out = c.piece(body);
    out.extend_from_slice(&c.finish());
    out
}

/// One stream's compressor.
pub(super) enum Compressor {
    Gzip(GzEncoder<Vec<u8>>),
    Deflate(ZlibEncoder<Vec<u8>>),
    Br,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compressor::Gzip(_) => "Compressor::Gzip",
            Compressor::Deflate(_) => "Compressor::Deflate",
            Compressor::Br => "Compressor::Br",
        })
    }
}

impl Compressor {
    pub(super) fn new(enc: Encoding) -> Compressor {
        match enc {
            Encoding::Gzip => Compressor::Gzip(GzEncoder::new(Vec::new(), Compression::fast())),
            Encoding::Deflate => {
                Compressor::Deflate(ZlibEncoder::new(Vec::new(), Compression::fast()))
            }
            Encoding::Br => Compressor::Br,
        }
    }

    /// The encoded bytes for `data`, flushed so a decoder can produce all of `data` from what
    /// was sent so far. Writing to a `Vec` cannot fail; an error would leave the piece empty.
    pub(super) fn piece(&mut self, data: &[u8]) -> Vec<u8> {
        match self {
            Compressor::Gzip(e) => {
                let _ = e.write_all(data).and_then(|()| e.flush());
                std::mem::take(e.get_mut())
            }
            Compressor::Deflate(e) => {
                let _ = e.write_all(data).and_then(|()| e.flush());
                std::mem::take(e.get_mut())
            }
            Compressor::Br => data.to_vec(),
        }
    }

    /// The end of the stream (the gzip trailer, the zlib checksum).
    pub(super) fn finish(self) -> Vec<u8> {
        match self {
            Compressor::Gzip(e) => e.finish().unwrap_or_default(),
            Compressor::Deflate(e) => e.finish().unwrap_or_default(),
            Compressor::Br => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn unzlib(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn whole_bodies_round_trip() {
        let body = br#"{"id":"x","choices":[]}"#.repeat(50);
        let gz = encode(Encoding::Gzip, &body);
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "a gzip member");
        assert!(gz.len() < body.len());
        assert_eq!(gunzip(&gz), body);
        let z = encode(Encoding::Deflate, &body);
        assert_eq!(z[0] & 0x0f, 8, "a zlib header (deflate, RFC 1950)");
        assert_eq!(unzlib(&z), body);
        assert_eq!(encode(Encoding::Br, &body), body);
    }

    #[test]
    fn every_stream_piece_decodes_on_arrival() {
        let events: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("data: {{\"n\":{i}}}\n\n").into_bytes())
            .collect();
        for enc in [Encoding::Gzip, Encoding::Deflate] {
            let mut c = Compressor::new(enc);
            let mut sent = Vec::new();
            let mut plain = Vec::new();
            for ev in &events {
                sent.extend_from_slice(&c.piece(ev));
                plain.extend_from_slice(ev);
                // Everything so far decodes without the end of the stream.
                let mut partial = Vec::new();
                let mut d: Box<dyn Read> = match enc {
                    Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(&sent[..])),
                    _ => Box::new(flate2::read::ZlibDecoder::new(&sent[..])),
                };
                let _ = d.read_to_end(&mut partial);
                assert_eq!(partial, plain, "{enc:?}");
            }
            sent.extend_from_slice(&c.finish());
            let whole = match enc {
                Encoding::Gzip => gunzip(&sent),
                _ => unzlib(&sent),
            };
            assert_eq!(whole, plain);
        }
    }

    #[test]
    fn encodings_parse_by_name() {
        assert_eq!(Encoding::parse("GZIP"), Some(Encoding::Gzip));
        assert_eq!(Encoding::parse(" deflate "), Some(Encoding::Deflate));
        assert_eq!(Encoding::parse("br"), Some(Encoding::Br));
        assert_eq!(Encoding::parse("zstd"), None);
        assert_eq!(Encoding::Gzip.name(), "gzip");
    }
}
