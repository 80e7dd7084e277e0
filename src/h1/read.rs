//! The crate's one async HTTP/1.1 request reader, over any monoio [`AsyncReadRent`]: more bytes
//! onto the end of a connection buffer ([`read_into`]), a whole request head
//! ([`read_request_head`]), a `Content-Length` body ([`read_body`]). The downstream server, the
//! admin API and the mock upstream read with it.
//!
//! Invariants: reads only append to the caller's buffer (a head's ranges stay valid for it);
//! the head is parsed by [`RequestHead::parse`] with the caller's limits, so a head larger than
//! `max_bytes` is an error, never an unbounded buffer; a peer that closes (or a read that
//! fails) mid-request is [`ReadError::Closed`], never a partial request.
//! Not here: deadlines (callers wrap these futures in `monoio::time::timeout`), body size
//! policy (callers check `Content-Length` against their limit before [`read_body`]), chunked
//! bodies (`chunked::Decoder` over [`read_into`]), writing.

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

use super::head::{HeadError, RequestHead};

/// Spare capacity, bytes, [`read_into`] makes sure a buffer has before each read.
pub(crate) const READ_RESERVE: usize = 4096;

/// Reads more bytes onto the end of `buf` (growing it by at least [`READ_RESERVE`] when less
/// than that is spare); `Ok(0)` when the peer closed. Cancel-safe as far as `reader.read` is.
pub async fn read_into<R: AsyncReadRent>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_RESERVE {
        buf.reserve(READ_RESERVE.max(buf.len()));
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let cap = owned.capacity();
    let (r, slice) = reader.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    r
}

/// Why no request (or no whole body) was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The peer closed the connection, or a read failed, before the request was whole.
    Closed,
    /// The head is not one to serve (malformed, too large, ambiguous framing).
    Head(HeadError),
}

/// Reads until `buf` starts with a whole request head, and parses it (at most `max_headers`
/// headers and `max_bytes` bytes). Bytes past the head (the body's start, pipelined requests)
/// stay in `buf` after `head.len`.
pub(crate) async fn read_request_head<R: AsyncReadRent>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max_headers: usize,
    max_bytes: usize,
) -> Result<RequestHead, ReadError> {
    loop {
        match RequestHead::parse(buf, max_headers, max_bytes) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(e) => return Err(ReadError::Head(e)),
        }
        match read_into(reader, buf).await {
            Ok(n) if n > 0 => {}
            _ => return Err(ReadError::Closed),
        }
    }
}

/// Reads until `buf` holds at least `end` bytes: a `Content-Length` body ends at
/// `head.len + length`. `end` must be bounded by the caller's body limit.
pub(crate) async fn read_body<R: AsyncReadRent>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    end: usize,
) -> Result<(), ReadError> {
    while buf.len() < end {
        match read_into(reader, buf).await {
            Ok(n) if n > 0 => {}
            _ => return Err(ReadError::Closed),
        }
    }
    Ok(())
}
