//! Incremental `Transfer-Encoding: chunked` decoding (RFC 9112 §7.1) and chunk framing.
//!
//! Invariants: the decoder keeps O(1) state whatever the input; chunk extensions and trailers
//! are skipped, bounded by [`MAX_LINE`]; a size that overflows or a missing CRLF is an error.

/// Longest chunk-size line (with extensions) or trailer line accepted.
pub(crate) const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

/// Why chunked input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedError(pub &'static str);

/// A streaming chunked decoder.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    size: u64,
    digits: usize,
    line: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Decoder {
            state: State::Size,
            size: 0,
            digits: 0,
            line: 0,
        }
    }

    /// True once the last chunk and trailers were consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as possible, appending payload bytes to `out`. Returns the
    /// number of input bytes consumed: all of them unless the body ended inside `input`
    /// (the rest belongs to the next message).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(ChunkedError("chunk size too large"));
                        }
                        self.size = self.size * 16 + d;
                        i += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => {
                        self.state = State::Ext;
                        self.line = 0;
                        i += 1;
                    }
                    b'\r' if self.digits > 0 => {
                        self.state = State::SizeLf;
                        i += 1;
                    }
                    _ => return Err(ChunkedError("invalid chunk size")),
                },
                State::Ext => {
                    match memchr::memchr(b'\r', &input[i..]) {
                        Some(j) => {
                            self.line += j;
                            i += j + 1;
                            self.state = State::SizeLf;
                        }
                        None => {
                            self.line += input.len() - i;
                            i = input.len();
                        }
                    }
                    if self.line > MAX_LINE {
                        return Err(ChunkedError("chunk extension too long"));
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError("expected LF after chunk size"));
                    }
                    i += 1;
                    self.digits = 0;
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let avail = (input.len() - i) as u64;
                    let take = avail.min(self.size) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkedError("expected CRLF after chunk data"));
                    }
                    i += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkedError("expected CRLF after chunk data"));
                    }
                    i += 1;
                    self.state = State::Size;
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::FinalLf;
                    } else {
                        self.state = State::TrailerLine;
                        self.line = 1;
                    }
                    i += 1;
                }
                State::TrailerLine => {
                    match memchr::memchr(b'\r', &input[i..]) {
                        Some(j) => {
                            self.line += j;
                            i += j + 1;
                            self.state = State::TrailerLf;
                        }
                        None => {
                            self.line += input.len() - i;
                            i = input.len();
                        }
                    }
                    if self.line > MAX_LINE {
                        return Err(ChunkedError("trailer line too long"));
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkedError("expected LF after trailer"));
                    }
                    i += 1;
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkedError("expected LF at end of chunked body"));
                    }
                    i += 1;
                    self.state = State::Done;
                    return Ok(i);
                }
                State::Done => return Ok(i),
            }
        }
        Ok(i)
    }
}

/// Appends one chunk (`<hex len>\r\n<data>\r\n`). Empty data writes nothing: an empty chunk
/// would end the body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    write_chunk_header(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the size line of a chunk of `len` bytes.
pub(crate) fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    let mut hex = [0u8; 16];
    let mut n = len;
    let mut i = hex.len();
    loop {
        i -= 1;
        hex[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The terminating chunk with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let n = d.decode(input, &mut out)?;
        Ok((out, n, d.is_done()))
    }

    #[test]
    fn decodes_whole_and_split_bodies() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, n, done) = decode_all(body).unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(&body[n..], b"NEXT");
        // byte by byte gives the same answer
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for b in body.iter() {
            if d.is_done() {
                break;
            }
            consumed += d.decode(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, b"hello world");
        assert_eq!(consumed, n);
    }

    #[test]
    fn rejects_bad_framing() {
        assert!(decode_all(b"zz\r\n").is_err());
        assert!(decode_all(b"\r\n").is_err());
        assert!(decode_all(b"5\r\nhelloXX").is_err());
        assert!(decode_all(b"ffffffffffffffffff\r\n").is_err());
        assert!(decode_all(b"5\nhello").is_err());
        let long_ext = [b"1;".as_slice(), &[b'a'; MAX_LINE + 10]].concat();
        assert!(decode_all(&long_ext).is_err());
    }

    #[test]
    fn chunk_writer_round_trips() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"data: x\n\n");
        write_chunk(&mut out, &[b'y'; 300]);
        write_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        assert!(out.starts_with(b"9\r\ndata: x\n\n\r\n12c\r\n"));
        let (decoded, n, done) = decode_all(&out).unwrap();
        assert!(done && n == out.len());
        assert_eq!(decoded.len(), 9 + 300);
    }
}
