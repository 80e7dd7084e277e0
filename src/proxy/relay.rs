//! Relaying an upstream answer to the client: whole bodies with `Content-Length`, and SSE
//! streams event by event, flushed as they arrive, with the client watched for disconnects.
//!
//! Invariants: only complete SSE events are forwarded (an error event after a cut is never
//! glued to half an event); the upstream's events pass unchanged — the gateway adds no
//! `[DONE]` and never a second one; a stream cut by the upstream (EOF or silence before the
//! framing completes, or a close-delimited stream without `[DONE]`) ends with an error event.

use std::time::{Duration, Instant};

use crate::error::{Error, Kind};
use crate::h1::chunked::Decoder;
use crate::h1::head::{Body, ResponseHead};
use crate::h1::sse;
use crate::server::Exchange;
use crate::server::response::ClientEvent;
use crate::snapshot::Channel;
use crate::upstream::Conn;
use crate::worker::Worker;

use super::{Info, MAX_RESPONSE_BODY};

/// True for upstream response headers passed on to the client. Framing, hop-by-hop, identity
/// (`server`, `date`, `x-request-id`), cookies and CORS are the gateway's own business.
pub(super) fn forward_response_header(name: &[u8]) -> bool {
    const DROP: &[&[u8]] = &[
        b"content-length",
        b"content-type",
        b"date",
        b"server",
        b"x-request-id",
        b"set-cookie",
        b"alt-svc",
    ];
    !(crate::h1::is_hop_by_hop(name)
        || DROP.iter().any(|d| d.eq_ignore_ascii_case(name))
        || starts_with_ci(name, b"access-control-")
        || starts_with_ci(name, b"x-router-"))
}

fn starts_with_ci(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn write_forwarded_headers(
    conn: &Conn,
    head: &ResponseHead,
    out: &mut crate::server::Responder<'_>,
) {
    for h in &head.headers {
        let name = &conn.buf[h.name.clone()];
        let value = &conn.buf[h.value.clone()];
        if name.eq_ignore_ascii_case(b"x-request-id") {
            out.header(b"x-upstream-request-id", value);
        } else if forward_response_header(name) {
            out.header(name, value);
        }
    }
}

/// Why reading a body stopped short.
#[derive(Debug)]
pub(super) enum BodyError {
    TooLarge,
    Timeout,
    Broken(String),
}

/// Where a fully read body is.
enum BodyAt {
    /// In the connection buffer at this range.
    Conn(std::ops::Range<usize>),
    /// Decoded into the caller's vector.
    Out,
}

async fn read_timed(
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

/// Reads a whole body per `head`'s framing. `Ok` means the framing completed exactly (the
/// connection may be reused if the head allows it).
async fn read_body_at(
    conn: &mut Conn,
    head: &ResponseHead,
    out: &mut Vec<u8>,
    max: usize,
    idle: Duration,
    deadline: Instant,
) -> Result<BodyAt, BodyError> {
    match head.body {
        Body::None => Ok(BodyAt::Conn(head.len..head.len)),
        Body::Length(n) => {
            if n > max as u64 {
                return Err(BodyError::TooLarge);
            }
            let end = head.len + n as usize;
            while conn.buf.len() < end {
                conn.buf.reserve((end - conn.buf.len()).min(1 << 20));
                if read_timed(conn, idle, deadline).await? == 0 {
                    return Err(BodyError::Broken("connection closed mid-body".into()));
                }
            }
            if conn.buf.len() > end {
                return Err(BodyError::Broken("extra bytes after the body".into()));
            }
            Ok(BodyAt::Conn(head.len..end))
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
                    return if pos == conn.buf.len() {
                        Ok(BodyAt::Out)
                    } else {
                        Err(BodyError::Broken("extra bytes after the body".into()))
                    };
                }
                conn.buf.truncate(pos);
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
            // Close-delimited: the head's keep_alive is false, so the connection is not reused.
            out.extend_from_slice(&conn.buf[head.len..]);
            Ok(BodyAt::Out)
        }
    }
}

/// Reads a body into `out` (bounded); `Ok` when the framing completed (the connection may then
/// be reused if `head.keep_alive`).
pub(super) async fn read_body(
    conn: &mut Conn,
    head: &ResponseHead,
    out: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> Result<(), BodyError> {
    let idle = deadline.saturating_duration_since(Instant::now());
    match read_body_at(conn, head, out, max, idle, deadline).await? {
        BodyAt::Conn(r) => {
            out.extend_from_slice(&conn.buf[r]);
            Ok(())
        }
        BodyAt::Out => Ok(()),
    }
}

/// Relays the answering attempt's response.
pub(super) async fn respond(
    worker: &Worker,
    ch: &Channel,
    mut conn: Conn,
    head: ResponseHead,
    info: &Info<'_>,
    ex: &mut Exchange<'_>,
) {
    let deadline = info.started + ch.timeouts.total;
    if head.event_stream && (200..300).contains(&head.status) {
        return relay_sse(worker, ch, conn, head, info, ex, deadline).await;
    }
    let mut decoded = Vec::new();
    match read_body_at(
        &mut conn,
        &head,
        &mut decoded,
        MAX_RESPONSE_BODY,
        ch.timeouts.idle,
        deadline,
    )
    .await
    {
        Ok(at) => {
            ex.out.begin(head.status);
            write_forwarded_headers(&conn, &head, &mut ex.out);
            info.write_headers(&mut ex.out);
            let ct = head
                .header(&conn.buf, b"content-type")
                .unwrap_or(b"application/json");
            let body = match at {
                BodyAt::Conn(r) => &conn.buf[r],
                BodyAt::Out => &decoded[..],
            };
            ex.out.body(ct, body).await;
            if head.keep_alive {
                worker.pool.put(&ch.endpoint, conn, Instant::now());
            }
        }
        Err(e) => {
            let (status, code, msg) = match e {
                BodyError::TooLarge => (
                    502,
                    "upstream_response_too_large",
                    "The upstream response body is larger than the gateway relays (64 MiB)."
                        .to_string(),
                ),
                BodyError::Timeout => (
                    504,
                    "upstream_timeout",
                    "The upstream stopped sending its response body.".to_string(),
                ),
                BodyError::Broken(m) => (
                    502,
                    "upstream_error",
                    format!("The upstream response body broke off: {m}."),
                ),
            };
            tracing::warn!(channel = %ch.id, code, "upstream body failed");
            ex.out
                .send_error(&Error::new(status, Kind::Server, code, msg))
                .await;
        }
    }
}

/// Body framing state of a stream being relayed.
enum Framing {
    Length(u64),
    Chunked(Decoder),
    Close,
}

impl Framing {
    /// Takes raw upstream bytes, appends payload to `pending`. Returns `true` once the framing
    /// is complete. Excess bytes after the end are an error (the connection is not reusable).
    fn absorb(&mut self, raw: &[u8], pending: &mut Vec<u8>) -> Result<bool, String> {
        match self {
            Framing::Length(left) => {
                let take = (*left).min(raw.len() as u64) as usize;
                pending.extend_from_slice(&raw[..take]);
                *left -= take as u64;
                if take < raw.len() {
                    return Err("extra bytes after the body".into());
                }
                Ok(*left == 0)
            }
            Framing::Chunked(d) => {
                let n = d
                    .decode(raw, pending)
                    .map_err(|e| format!("bad chunked body: {}", e.0))?;
                if d.is_done() && n < raw.len() {
                    return Err("extra bytes after the body".into());
                }
                Ok(d.is_done())
            }
            Framing::Close => {
                pending.extend_from_slice(raw);
                Ok(false)
            }
        }
    }
}

enum End {
    Clean,
    Cut(String),
    ClientGone,
}

#[allow(clippy::too_many_arguments)]
async fn relay_sse(
    worker: &Worker,
    ch: &Channel,
    mut conn: Conn,
    head: ResponseHead,
    info: &Info<'_>,
    ex: &mut Exchange<'_>,
    deadline: Instant,
) {
    let Exchange { out, input } = ex;
    out.begin(head.status);
    write_forwarded_headers(&conn, &head, out);
    info.write_headers(out);
    let ct: Vec<u8> = head
        .header(&conn.buf, b"content-type")
        .unwrap_or(b"text/event-stream")
        .to_vec();
    out.start_stream(&ct).await;
    if out.failed {
        input.closed = true;
        return;
    }

    let mut framing = match head.body {
        Body::Length(n) => Framing::Length(n),
        Body::Chunked => Framing::Chunked(Decoder::new()),
        Body::Close => Framing::Close,
        Body::None => Framing::Length(0),
    };
    let mut pending: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut done_seen = false;
    let mut reusable = head.keep_alive;
    let mut complete = matches!(framing, Framing::Length(0));
    let first = conn.buf.split_off(head.len);
    conn.buf.clear();
    let mut scan_from = 0;
    let mut end = match framing.absorb(&first, &mut pending) {
        Ok(c) => {
            complete |= c;
            None
        }
        Err(m) => Some(End::Cut(m)),
    };

    let mut watch = input.watch();
    while end.is_none() {
        // Forward every complete event now.
        if let Some(e) = sse::complete_end(&pending, scan_from) {
            done_seen |= sse::has_done(&pending[..e]);
            out.stream_data(&pending[..e]).await;
            pending.drain(..e);
            if out.failed {
                end = Some(End::ClientGone);
                break;
            }
        }
        scan_from = pending.len();
        if complete {
            end = Some(End::Clean);
            break;
        }
        if pending.len() > MAX_RESPONSE_BODY {
            end = Some(End::Cut("an SSE event larger than 64 MiB".into()));
            break;
        }
        let wait = ch
            .timeouts
            .idle
            .min(deadline.saturating_duration_since(Instant::now()));
        let step = {
            let read = monoio::time::timeout(wait, conn.read_more());
            let mut read = std::pin::pin!(read);
            loop {
                if !watch.is_active() {
                    break Some((&mut read).await);
                }
                monoio::select! {
                    r = &mut read => break Some(r),
                    ev = watch.event() => {
                        if ev == ClientEvent::Gone {
                            break None;
                        }
                    }
                }
            }
        };
        match step {
            None => end = Some(End::ClientGone),
            Some(Err(_)) => {
                end = Some(End::Cut(if Instant::now() >= deadline {
                    "the upstream exceeded its total timeout".into()
                } else {
                    format!("the upstream sent nothing for {:?}", ch.timeouts.idle)
                }))
            }
            Some(Ok(Err(e))) => end = Some(End::Cut(format!("read failed: {e}"))),
            Some(Ok(Ok(0))) => {
                reusable = false;
                end = Some(if matches!(framing, Framing::Close) && done_seen {
                    End::Clean
                } else if matches!(framing, Framing::Close) {
                    // Flush what arrived, then decide: a close right after [DONE] is clean.
                    if let Some(e) = sse::complete_end(&pending, 0) {
                        done_seen |= sse::has_done(&pending[..e]);
                    }
                    if done_seen {
                        End::Clean
                    } else {
                        End::Cut("the upstream closed the stream before [DONE]".into())
                    }
                } else {
                    End::Cut("the upstream closed the connection mid-stream".into())
                });
            }
            Some(Ok(Ok(_))) => {
                let raw = std::mem::take(&mut conn.buf);
                match framing.absorb(&raw, &mut pending) {
                    Ok(c) => complete = c,
                    Err(m) => {
                        reusable = false;
                        end = Some(End::Cut(m));
                    }
                }
                conn.buf = raw;
                conn.buf.clear();
            }
        }
    }
    match end.unwrap_or(End::Clean) {
        End::ClientGone => {
            // Dropping `conn` closes the upstream connection now.
            drop(conn);
            watch.finish().await;
            tracing::debug!(channel = %ch.id, "client went away mid-stream; upstream closed");
        }
        End::Clean => {
            // Trailing bytes without a final blank line are still the upstream's data.
            out.stream_data(&pending).await;
            out.end_stream().await;
            watch.finish().await;
            if reusable && complete && !out.failed {
                worker.pool.put(&ch.endpoint, conn, Instant::now());
            }
        }
        End::Cut(why) => {
            drop(conn);
            if let Some(e) = sse::complete_end(&pending, 0) {
                out.stream_data(&pending[..e]).await;
            }
            tracing::warn!(channel = %ch.id, reason = %why, "upstream stream cut");
            let err = Error::new(
                502,
                Kind::Server,
                "upstream_stream_cut",
                format!("The upstream stream broke off: {why}."),
            );
            let mut event = Vec::with_capacity(160);
            let mut body = Vec::with_capacity(128);
            err.write_body(&mut body);
            sse::write_data(&mut event, &body);
            out.stream_data(&event).await;
            out.end_stream().await;
            watch.finish().await;
        }
    }
}
