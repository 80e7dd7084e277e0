//! Content codings of upstream answers (RFC 9110 §8.4.1). The gateway asks every upstream for
//! `Accept-Encoding: identity`; some ignore it. `gzip` (RFC 1952; also `x-gzip`) and `deflate`
//! (the zlib format of RFC 1950, as HTTP defines it; a raw deflate stream, which some servers
//! send instead, is recognised by its first two bytes) are decoded here, incrementally, so a
//! compressed event stream is relayed event by event; any other coding is refused by name.
//!
//! Invariants: decoding is push-driven and never blocks; the decoded output a caller holds is
//! bounded by the caller's `max` (a decompression bomb stops at the cap, it is never inflated
//! whole), and the decoder's own memory is fixed (a 16 KiB window onto its output plus
//! miniz_oxide's state); a gzip member's CRC-32 and length are checked, and the zlib
//! checksum by miniz_oxide; bad input is an error, never a panic.
//! Not here: what a failure means for the attempt (`proxy::relay`), the framing (`body`).

use flate2::{Crc, Decompress, FlushDecompress, Status};

use crate::h1::head::ResponseHead;

/// What an answer's `Content-Encoding` asks of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// No coding (absent, or only `identity`).
    Identity,
    /// `gzip` / `x-gzip`.
    Gzip,
    /// `deflate`.
    Deflate,
}

impl Coding {
    /// The coding `head` announces; `Err` names a coding the gateway does not decode (`br`,
    /// `zstd`, a list of several, anything unknown), truncated and made printable for a
    /// failure's detail.
    pub(crate) fn of(head: &ResponseHead, buf: &[u8]) -> Result<Coding, String> {
        let mut found = Coding::Identity;
        let mut codings = 0;
        let mut other = false;
        for h in &head.headers {
            if !buf[h.name.clone()].eq_ignore_ascii_case(b"content-encoding") {
                continue;
            }
            for c in buf[h.value.clone()].split(|&b| b == b',') {
                let c = c.trim_ascii();
                if c.is_empty() || c.eq_ignore_ascii_case(b"identity") {
                    continue;
                }
                codings += 1;
                if c.eq_ignore_ascii_case(b"gzip") || c.eq_ignore_ascii_case(b"x-gzip") {
                    found = Coding::Gzip;
                } else if c.eq_ignore_ascii_case(b"deflate") {
                    found = Coding::Deflate;
                } else {
                    other = true;
                }
            }
        }
        if other || codings > 1 {
            let named: String = head
                .header(buf, b"content-encoding")
                .unwrap_or_default()
                .iter()
                .take(64)
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '?'
                    }
                })
                .collect();
            return Err(named);
        }
        Ok(found)
    }

    /// Its name, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// Why decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The decoded bytes would pass the caller's bound.
    TooLarge,
    /// Not a valid stream of the coding (or it ended early).
    Corrupt(String),
}

/// The bytes of a gzip member header (RFC 1952 §2.3) still to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// The fixed 10 bytes; `n` read so far, `flags` from byte 3.
    Fixed { n: u8, flags: u8 },
    /// FEXTRA's 2-byte length; `n` bytes and the value so far.
    ExtraLen { n: u8, len: u16, flags: u8 },
    /// FEXTRA's data: `left` bytes.
    Extra { left: u16, flags: u8 },
    /// FNAME: up to a zero byte.
    Name { flags: u8 },
    /// FCOMMENT: up to a zero byte.
    Comment { flags: u8 },
    /// FHCRC: `left` bytes.
    Crc { left: u8 },
}

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
/// A file name or comment longer than this is not a header a server sends.
const MAX_HEADER_TEXT: usize = 64 * 1024;

#[derive(Debug)]
enum State {
    /// gzip: reading a member header.
    Header(Header),
    /// deflate: waiting for the two bytes that tell zlib from raw deflate; the first, if read.
    Sniff(Option<u8>),
    /// Inflating.
    Body,
    /// gzip: the 8-byte trailer (CRC-32, length), `n` read so far.
    Trailer { n: u8, bytes: [u8; 8] },
    /// The stream ended (a gzip member's trailer checked).
    Done,
}

/// An incremental decoder for one answer's body.
pub(crate) struct Inflater {
    coding: Coding,
    state: State,
    inflate: Decompress,
    crc: Crc,
    /// Where each step's output lands before it is appended to the caller's buffer.
    window: Box<[u8]>,
    /// Bytes of the current gzip header's name or comment (bounded).
    text: usize,
    /// Any input arrived (an empty body is a valid empty answer).
    seen: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("coding", &self.coding)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Decoded bytes produced per inflate step.
const WINDOW: usize = 16 * 1024;

impl Inflater {
    /// A decoder for `coding` (`None` for `identity`: nothing to decode).
    pub(crate) fn new(coding: Coding) -> Option<Inflater> {
        let state = match coding {
            Coding::Identity => return None,
            Coding::Gzip => State::Header(Header::Fixed { n: 0, flags: 0 }),
            Coding::Deflate => State::Sniff(None),
        };
        Some(Inflater {
            coding,
            state,
            inflate: Decompress::new(false),
            crc: Crc::new(),
            window: vec![0; WINDOW].into_boxed_slice(),
            text: 0,
            seen: false,
        })
    }

    /// Decodes `data` (the next encoded bytes, any split), appending the decoded bytes to
    /// `out`; `TooLarge` as soon as `out` would pass `max` bytes.
    pub(crate) fn push(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        self.seen |= !data.is_empty();
        while let Some(&first) = data.first() {
            match self.state {
                State::Header(h) => {
                    let n = self.header(h, data)?;
                    data = &data[n..];
                }
                State::Sniff(None) => {
                    self.state = State::Sniff(Some(first));
                    data = &data[1..];
                }
                State::Sniff(Some(b0)) => {
                    // RFC 1950: CM 8 (deflate), a window of at most 32 KiB, and a header
                    // check that makes the first two bytes a multiple of 31.
                    let zlib = b0 & 0x0f == 8
                        && b0 >> 4 <= 7
                        && (u16::from(b0) << 8 | u16::from(first)) % 31 == 0;
                    self.inflate = Decompress::new(zlib);
                    self.state = State::Body;
                    let held = [b0];
                    self.inflate_some(&held, out, max)?;
                }
                State::Body => {
                    let n = self.inflate_some(data, out, max)?;
                    data = &data[n..];
                }
                State::Trailer { mut n, mut bytes } => {
                    let take = (8 - usize::from(n)).min(data.len());
                    bytes[usize::from(n)..usize::from(n) + take].copy_from_slice(&data[..take]);
                    n += take as u8;
                    data = &data[take..];
                    self.state = State::Trailer { n, bytes };
                    if n == 8 {
                        self.check_trailer(bytes)?;
                        self.state = State::Done;
                    }
                }
                State::Done if self.coding == Coding::Gzip => {
                    // RFC 1952 §2.2: a gzip file may hold several members, one after another.
                    self.inflate.reset(false);
                    self.crc.reset();
                    self.state = State::Header(Header::Fixed { n: 0, flags: 0 });
                }
                State::Done => {
                    return Err(InflateError::Corrupt(format!(
                        "bytes after the end of the {} stream",
                        self.coding.name()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The encoded body ended: `Ok` when the stream was complete (or no byte came at all).
    pub(crate) fn finish(&self) -> Result<(), InflateError> {
        match self.state {
            State::Done => Ok(()),
            _ if !self.seen => Ok(()),
            _ => Err(InflateError::Corrupt(format!(
                "the {} stream ended early",
                self.coding.name()
            ))),
        }
    }

    /// Reads gzip header bytes from `data`; returns how many it consumed.
    fn header(&mut self, mut h: Header, data: &[u8]) -> Result<usize, InflateError> {
        let bad = |why: &str| Err(InflateError::Corrupt(format!("not a gzip stream: {why}")));
        let mut used = 0;
        while used < data.len() {
            let b = data[used];
            used += 1;
            h = match h {
                Header::Fixed { n, flags } => {
                    match n {
                        0 if b != 0x1f => return bad("wrong magic"),
                        1 if b != 0x8b => return bad("wrong magic"),
                        2 if b != 8 => return bad("not deflate-compressed"),
                        3 if b & 0xe0 != 0 => return bad("reserved flags set"),
                        _ => {}
                    }
                    let flags = if n == 3 { b } else { flags };
                    if n < 9 {
                        Header::Fixed { n: n + 1, flags }
                    } else if flags & FEXTRA != 0 {
                        Header::ExtraLen {
                            n: 0,
                            len: 0,
                            flags,
                        }
                    } else {
                        match after_extra(flags) {
                            Some(next) => next,
                            None => return self.header_done(used),
                        }
                    }
                }
                Header::ExtraLen { n: 0, flags, .. } => Header::ExtraLen {
                    n: 1,
                    len: u16::from(b),
                    flags,
                },
                Header::ExtraLen { len, flags, .. } => {
                    let left = len | u16::from(b) << 8;
                    if left > 0 {
                        Header::Extra { left, flags }
                    } else {
                        match after_extra(flags) {
                            Some(next) => next,
                            None => return self.header_done(used),
                        }
                    }
                }
                Header::Extra { left, flags } => {
                    if left > 1 {
                        Header::Extra {
                            left: left - 1,
                            flags,
                        }
                    } else {
                        match after_extra(flags) {
                            Some(next) => next,
                            None => return self.header_done(used),
                        }
                    }
                }
                Header::Name { .. } | Header::Comment { .. } if b != 0 => {
                    self.text += 1;
                    if self.text > MAX_HEADER_TEXT {
                        return bad("header text too long");
                    }
                    h
                }
                Header::Name { flags } => {
                    self.text = 0;
                    match after_name(flags) {
                        Some(next) => next,
                        None => return self.header_done(used),
                    }
                }
                Header::Comment { flags } => {
                    self.text = 0;
                    if flags & FHCRC != 0 {
                        Header::Crc { left: 2 }
                    } else {
                        return self.header_done(used);
                    }
                }
                Header::Crc { left: 2 } => Header::Crc { left: 1 },
                Header::Crc { .. } => return self.header_done(used),
            };
        }
        self.state = State::Header(h);
        Ok(used)
    }

    fn header_done(&mut self, used: usize) -> Result<usize, InflateError> {
        self.state = State::Body;
        Ok(used)
    }

    /// Inflates from `input` until it is consumed or the stream ends; returns the bytes used.
    fn inflate_some(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize, InflateError> {
        let mut at = 0;
        loop {
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(&input[at..], &mut self.window, FlushDecompress::None)
                .map_err(|e| {
                    InflateError::Corrupt(format!("invalid {} data: {e}", self.coding.name()))
                })?;
            // Both are bounded by the slices given, so they fit in usize.
            let used = (self.inflate.total_in() - in0) as usize;
            let made = (self.inflate.total_out() - out0) as usize;
            at += used;
            if made > 0 {
                if out.len().saturating_add(made) > max {
                    return Err(InflateError::TooLarge);
                }
                let piece = &self.window[..made];
                out.extend_from_slice(piece);
                if self.coding == Coding::Gzip {
                    self.crc.update(piece);
                }
            }
            if status == Status::StreamEnd {
                self.state = if self.coding == Coding::Gzip {
                    State::Trailer {
                        n: 0,
                        bytes: [0; 8],
                    }
                } else {
                    State::Done
                };
                return Ok(at);
            }
            // All input taken and the window not filled: nothing more is pending.
            if at == input.len() && made < self.window.len() {
                return Ok(at);
            }
            if used == 0 && made == 0 {
                return Err(InflateError::Corrupt(format!(
                    "the {} stream made no progress",
                    self.coding.name()
                )));
            }
        }
    }

    fn check_trailer(&self, t: [u8; 8]) -> Result<(), InflateError> {
        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let len = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        if crc != self.crc.sum() || len != self.crc.amount() {
            return Err(InflateError::Corrupt(
                "the gzip checksum does not match the data".into(),
            ));
        }
        Ok(())
    }
}

/// The header part after FEXTRA, by the flags (`None`: the header is complete).
fn after_extra(flags: u8) -> Option<Header> {
    if flags & FNAME != 0 {
        Some(Header::Name { flags })
    } else {
        after_name(flags)
    }
}

/// The header part after FNAME, by the flags (`None`: the header is complete).
fn after_name(flags: u8) -> Option<Header> {
    if flags & FCOMMENT != 0 {
        Some(Header::Comment { flags })
    } else if flags & FHCRC != 0 {
        Some(Header::Crc { left: 2 })
    } else {
        None
    }
}

/// Decodes a whole body in `coding` (bounded by `max` decoded bytes).
pub(crate) fn decode_whole(
    coding: Coding,
    body: &[u8],
    max: usize,
) -> Result<Option<Vec<u8>>, InflateError> {
    let Some(mut inf) = Inflater::new(coding) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    inf.push(body, &mut out, max)?;
    inf.finish()?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sample() -> Vec<u8> {
        (0..2000)
            .map(|i| format!("data: {{\"n\":{i},\"text\":\"hello\"}}\n\n"))
            .collect::<String>()
            .into_bytes()
    }

    /// Decodes `encoded` fed in pieces of `step` bytes.
    fn in_pieces(coding: Coding, encoded: &[u8], step: usize) -> Result<Vec<u8>, InflateError> {
        let mut inf = Inflater::new(coding).unwrap();
        let mut out = Vec::new();
        for piece in encoded.chunks(step) {
            inf.push(piece, &mut out, usize::MAX)?;
        }
        inf.finish()?;
        Ok(out)
    }

    fn head(headers: &str) -> (ResponseHead, Vec<u8>) {
        let raw = format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n{headers}\r\n").into_bytes();
        let h = ResponseHead::parse(&raw, 8192, false).unwrap().unwrap();
        (h, raw)
    }

    #[test]
    fn codings_are_read_from_the_head() {
        let of = |h: &str| {
            let (head, raw) = head(h);
            Coding::of(&head, &raw)
        };
        assert_eq!(of(""), Ok(Coding::Identity));
        assert_eq!(of("Content-Encoding: identity\r\n"), Ok(Coding::Identity));
        assert_eq!(of("content-encoding: GZIP\r\n"), Ok(Coding::Gzip));
        assert_eq!(of("Content-Encoding: x-gzip\r\n"), Ok(Coding::Gzip));
        assert_eq!(of("Content-Encoding: deflate\r\n"), Ok(Coding::Deflate));
        assert_eq!(of("Content-Encoding: identity, gzip\r\n"), Ok(Coding::Gzip));
        assert_eq!(of("Content-Encoding: br\r\n"), Err("br".into()));
        assert_eq!(of("Content-Encoding: zstd\r\n"), Err("zstd".into()));
        assert_eq!(
            of("Content-Encoding: gzip, deflate\r\n"),
            Err("gzip, deflate".into()),
            "two codings in a row are not decoded"
        );
        assert!(of("Content-Encoding: gzip\r\nContent-Encoding: br\r\n").is_err());
    }

    #[test]
    fn gzip_decodes_whatever_the_split() {
        let data = sample();
        let gz = gzip(&data);
        for step in [1, 2, 7, 10, 11, 512, gz.len()] {
            assert_eq!(in_pieces(Coding::Gzip, &gz, step).unwrap(), data, "{step}");
        }
    }

    #[test]
    fn gzip_headers_with_every_optional_part_decode() {
        let data = b"{\"ok\":true}".to_vec();
        let mut e = flate2::GzBuilder::new()
            .filename("answer.json")
            .comment("from a server that names its files")
            .extra(vec![1, 2, 3, 4])
            .write(Vec::new(), Compression::fast());
        e.write_all(&data).unwrap();
        let gz = e.finish().unwrap();
        for step in [1, 3, gz.len()] {
            assert_eq!(in_pieces(Coding::Gzip, &gz, step).unwrap(), data, "{step}");
        }
        // Two members, one after the other, are one body.
        let mut two = gzip(b"{\"a\":");
        two.extend_from_slice(&gzip(b"1}"));
        assert_eq!(in_pieces(Coding::Gzip, &two, 5).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn deflate_is_zlib_or_raw() {
        let data = sample();
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&data).unwrap();
        let z = z.finish().unwrap();
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(&data).unwrap();
        let raw = raw.finish().unwrap();
        for step in [1, 2, 100, usize::MAX] {
            assert_eq!(in_pieces(Coding::Deflate, &z, step).unwrap(), data);
            assert_eq!(in_pieces(Coding::Deflate, &raw, step).unwrap(), data);
        }
    }

    #[test]
    fn broken_streams_are_errors_never_panics() {
        let data = sample();
        let gz = gzip(&data);
        // Truncated: every prefix is either incomplete or an error, never a success.
        for cut in [1, 5, 10, 11, gz.len() / 2, gz.len() - 4, gz.len() - 1] {
            assert!(
                matches!(
                    in_pieces(Coding::Gzip, &gz[..cut], 3),
                    Err(InflateError::Corrupt(_))
                ),
                "{cut}"
            );
        }
        // A flipped byte in the data or the checksum.
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        assert!(in_pieces(Coding::Gzip, &bad, 64).is_err());
        let mut bad = gz;
        let at = bad.len() - 6;
        bad[at] ^= 1;
        assert!(matches!(
            in_pieces(Coding::Gzip, &bad, 64),
            Err(InflateError::Corrupt(m)) if m.contains("checksum")
        ));
        // Not gzip at all, and garbage after a complete zlib stream.
        assert!(in_pieces(Coding::Gzip, b"{\"plain\":true}", 4).is_err());
        let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
        z.write_all(b"{}").unwrap();
        let mut z = z.finish().unwrap();
        z.extend_from_slice(b"junk");
        assert!(in_pieces(Coding::Deflate, &z, 2).is_err());
        // Arbitrary bytes.
        let mut x: u32 = 12345;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = in_pieces(Coding::Gzip, &junk, 7);
            let _ = in_pieces(Coding::Deflate, &junk, 7);
        }
        // No bytes at all: an empty body.
        assert_eq!(in_pieces(Coding::Gzip, b"", 1).unwrap(), b"");
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_cap() {
        // 16 MiB of zeros compresses to about 16 KiB.
        let zeros = vec![0u8; 16 << 20];
        let gz = gzip(&zeros);
        assert!(gz.len() < 64 * 1024, "{}", gz.len());
        let mut inf = Inflater::new(Coding::Gzip).unwrap();
        let mut out = Vec::new();
        let cap = 1 << 20;
        assert_eq!(inf.push(&gz, &mut out, cap), Err(InflateError::TooLarge));
        assert!(out.len() <= cap, "{}", out.len());
        assert!(out.capacity() <= 2 * cap + WINDOW, "{}", out.capacity());
        assert_eq!(
            decode_whole(Coding::Gzip, &gz, cap),
            Err(InflateError::TooLarge)
        );
        assert_eq!(decode_whole(Coding::Identity, &gz, cap), Ok(None));
    }
}
