//! Reading a whole upstream response body per its framing (Content-Length, chunked,
//! close-delimited), bounded in size and time. Shared by the proxy and the control thread's
//! discovery and probes.
//!
//! Invariants: never reads past the framing into the next response; reports whether the
//! framing ended exactly at the bytes read (only then may the connection be pooled).

use std::time::{Duration, Instant};

use crate::h1::chunked::Decoder;
use crate::h1::head::{Body, ResponseHead};

use super::Conn;

/// Why reading a body stopped short.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Larger than the caller's bound.
    TooLarge,
    /// Silence past the idle or total deadline.
    Timeout,
    /// EOF mid-body, a read error or bad framing.
    Broken(String),
}

/// Where a fully read body is.
#[derive(Debug)]
pub(crate) enum BodyAt {
    /// In the connection buffer at this range.
    Conn(std::ops::Range<usize>),
    /// Decoded into the caller's vector.
    Out,
}

/// Reads more bytes within the idle and total deadlines.
pub(crate) async fn read_timed(
    conn: &mut Conn,
    idle: Duration,
    deadline: Instant,
) -> Result<usize, BodyError> {
    let wait = idle.min(deadline.saturating_duration_since(Instant::now()));
    match monoio::time::timeout(wait, conn.read_more()).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(BodyError::Broken(format!("read failed: {e}"))),
        Err(_) => Err(BodyError::Timeout),
    }
}

/// Reads a whole body per `head`'s framing. The flag says whether the framing ended exactly at
/// the end of the bytes read (only then may the connection be reused).
pub(crate) async fn read_body_at(
    conn: &mut Conn,
    head: &ResponseHead,
    out: &mut Vec<u8>,
    max: usize,
    idle: Duration,
    deadline: Instant,
) -> Result<(BodyAt, bool), BodyError> {
    match head.body {
        Body::None => Ok((BodyAt::Conn(head.len..head.len), conn.buf.len() == head.len)),
        Body::Length(n) => {
            if n > max as u64 {
                return Err(BodyError::TooLarge);
            }
            let end = head.len + n as usize;
            // One allocation of the body's size (plus the slack `read_more` keeps, so it never
            // grows the buffer itself): growing by doubling would hold up to twice the body,
            // and copy it, on the way.
            conn.buf
                .reserve_exact(end.saturating_sub(conn.buf.len()) + super::READ_CHUNK);
            while conn.buf.len() < end {
                if read_timed(conn, idle, deadline).await? == 0 {
                    return Err(BodyError::Broken("connection closed mid-body".into()));
                }
            }
            Ok((BodyAt::Conn(head.len..end), conn.buf.len() == end))
        }
        Body::Chunked => {
            let mut dec = Decoder::new();
            let mut pos = head.len;
            loop {
                let n = dec
                    .decode(&conn.buf[pos..], out)
                    .map_err(|e| BodyError::Broken(format!("bad chunked body: {}", e.0)))?;
                pos += n;
                if out.len() > max {
                    return Err(BodyError::TooLarge);
                }
                if dec.is_done() {
                    return Ok((BodyAt::Out, pos == conn.buf.len()));
                }
                conn.buf.drain(head.len..pos);
                pos = head.len;
                if read_timed(conn, idle, deadline).await? == 0 {
                    return Err(BodyError::Broken("connection closed mid-body".into()));
                }
            }
        }
        Body::Close => {
            loop {
                if conn.buf.len() - head.len > max {
                    return Err(BodyError::TooLarge);
                }
                if read_timed(conn, idle, deadline).await? == 0 {
                    break;
                }
            }
            out.extend_from_slice(&conn.buf[head.len..]);
            Ok((BodyAt::Out, false))
        }
    }
}

/// Reads a body into `out` (bounded); `Ok(true)` when the connection may be reused (if the
/// head allows it).
pub(crate) async fn read_body(
    conn: &mut Conn,
    head: &ResponseHead,
    out: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> Result<bool, BodyError> {
    let idle = deadline.saturating_duration_since(Instant::now());
    let (at, exact) = read_body_at(conn, head, out, max, idle, deadline).await?;
    if let BodyAt::Conn(r) = at {
        out.extend_from_slice(&conn.buf[r]);
    }
    Ok(exact)
}
