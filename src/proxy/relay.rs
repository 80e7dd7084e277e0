//! Relaying an upstream answer to the client: whole bodies with `Content-Length`, and SSE
//! streams event by event, flushed as they arrive, with the client watched for disconnects.
//!
//! Invariants: only complete SSE events are forwarded (an error event after a cut is never
//! glued to half an event); the upstream's events pass unchanged — the gateway adds no
//! `[DONE]` and never a second one; once `[DONE]` went out the client's stream ends, whatever
//! the upstream does next; a stream cut by the upstream (EOF or silence before the framing
//! completes, or a close-delimited stream without `[DONE]`) ends with an error event. A
//! connection whose response was not framed exactly (trailing bytes, early close) is never
//! pooled, but a complete answer is still relayed.

use std::time::{Duration, Instant};

use crate::error::{Error, Kind};
use crate::h1::chunked::Decoder;
use crate::h1::head::{Body, ResponseHead};
use crate::h1::sse;
use crate::server::Responder;
use crate::server::response::ClientGuard;
use crate::upstream::Conn;
use crate::upstream::body::{BodyAt, BodyError, read_body_at, read_timed};
use crate::worker::Worker;

use super::MAX_RESPONSE_BODY;
use super::failure::{Cause, Stage, UpstreamError};
use super::session::Info;
use super::transcode::Transcode;

/// Whole answers at least this large are written from the buffer they were read into.
const LARGE_BODY: usize = 64 * 1024;

/// After the client's stream ended with `[DONE]`, how long the upstream may take to finish its
/// framing so the connection can be pooled.
const FRAMING_GRACE: Duration = Duration::from_secs(2);

/// The upstream headers to relay, as (name, value) slices of `buf`: [`forward_response_header`]
/// minus anything the upstream's own `Connection` header names.
pub(super) fn forwarded<'b>(
    buf: &'b [u8],
    head: &ResponseHead,
) -> impl Iterator<Item = (&'b [u8], &'b [u8])> {
    let named_by_connection = |name: &[u8]| {
        head.headers.iter().any(|h| {
            buf[h.name.clone()].eq_ignore_ascii_case(b"connection")
                && crate::h1::has_token(&buf[h.value.clone()], name)
        })
    };
    head.headers
        .iter()
        .map(|h| (&buf[h.name.clone()], &buf[h.value.clone()]))
        .filter(move |(n, _)| crate::h1::forwarding::forward_response(n) && !named_by_connection(n))
}

fn write_forwarded_headers(buf: &[u8], head: &ResponseHead, out: &mut Responder<'_>, sse: bool) {
    for h in &head.headers {
        let name = &buf[h.name.clone()];
        if name.eq_ignore_ascii_case(b"x-request-id") {
            out.header(b"x-upstream-request-id", &buf[h.value.clone()]);
        }
    }
    for (name, value) in forwarded(buf, head) {
        // The gateway writes its own cache-control on streams.
        if sse && name.eq_ignore_ascii_case(b"cache-control") {
            continue;
        }
        out.header(name, value);
    }
}

/// How relaying ended, for the channel's health and for failover.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The whole answer reached the client (or the client stopped reading it).
    Complete,
    /// The upstream broke off after bytes reached the client (no failover possible).
    Broken,
    /// The client left before the end; says nothing about the upstream.
    ClientGone,
    /// The upstream failed before anything reached the client: fail over.
    FailedUnsent(UpstreamError),
}

/// Relays the answering attempt's response (on `info.channel`), translated by `tc` into the
/// client's family.
pub(super) async fn respond(
    worker: &Worker,
    mut conn: Conn,
    head: ResponseHead,
    info: &Info<'_>,
    out: &mut Responder<'_>,
    guard: &mut ClientGuard<'_, '_>,
    tc: &mut Transcode,
) -> Outcome {
    let ch = info.channel;
    if head.event_stream && (200..300).contains(&head.status) {
        return relay_sse(worker, conn, head, info, out, guard, tc).await;
    }
    let deadline = info.started + ch.timeouts.total;
    let body_started = Instant::now();
    // The answer's bytes count toward the worker's memory bound while it holds them.
    let mut held = worker.hold(match head.body {
        Body::Length(n) => (n as usize).min(MAX_RESPONSE_BODY),
        _ => 0,
    });
    let mut decoded = Vec::new();
    let read = read_body_at(
        &mut conn,
        &head,
        &mut decoded,
        MAX_RESPONSE_BODY,
        ch.timeouts.idle,
        deadline,
    );
    let Some(result) = guard.run(std::pin::pin!(read)).await else {
        tracing::debug!(channel = %ch.id, "client left during the upstream body; upstream closed");
        return Outcome::ClientGone;
    };
    match result {
        Ok((at, exact)) => {
            let range = match &at {
                BodyAt::Conn(r) => r.clone(),
                BodyAt::Out => 0..decoded.len(),
            };
            let body = match at {
                BodyAt::Conn(_) => &conn.buf[range.clone()],
                BodyAt::Out => &decoded[..],
            };
            let mut translated = Vec::new();
            if (200..300).contains(&head.status) {
                if let Err(m) = tc.body(body, info.model, info.id, info.created, &mut translated) {
                    return Outcome::FailedUnsent(UpstreamError::new(
                        Cause::Malformed,
                        Stage::Body,
                        format!("the upstream's answer could not be read: {m}"),
                    ));
                }
            } else {
                tc.error(head.status, body, &mut translated);
            }
            out.begin(head.status);
            write_forwarded_headers(&conn.buf, &head, out, false);
            tc.overhead = Some(info.write_headers(out, body_started.elapsed()));
            if let Some(cost) = tc.usage().and_then(|u| info.cost(&u)) {
                super::session::write_cost(out, cost);
            }
            held.grow_to(body.len() + translated.len());
            if !translated.is_empty() {
                drop(std::mem::take(&mut decoded));
                let range = 0..translated.len();
                drop(out.body_owned(b"application/json", translated, range).await);
            } else if body.len() < LARGE_BODY {
                let ct = head
                    .header(&conn.buf, b"content-type")
                    .unwrap_or(b"application/json");
                out.body(ct, body).await;
            } else {
                // Written from the buffer it was read into: a large answer is never copied.
                let ct = head
                    .header(&conn.buf, b"content-type")
                    .unwrap_or(b"application/json")
                    .to_vec();
                match at {
                    BodyAt::Conn(_) => {
                        let buf = std::mem::take(&mut conn.buf);
                        conn.buf = out.body_owned(&ct, buf, range).await;
                    }
                    BodyAt::Out => {
                        let buf = std::mem::take(&mut decoded);
                        drop(out.body_owned(&ct, buf, range).await);
                    }
                }
            }
            if head.keep_alive && exact {
                worker.pool.put(&ch.endpoint, conn, Instant::now());
            }
            Outcome::Complete
        }
        // Nothing reached the client yet: the proxy may still try another channel.
        Err(BodyError::TooLarge) => Outcome::FailedUnsent(UpstreamError::new(
            Cause::TooLarge,
            Stage::Body,
            "response body larger than 64 MiB",
        )),
        Err(BodyError::Timeout) => Outcome::FailedUnsent(UpstreamError::new(
            Cause::Timeout,
            Stage::Body,
            "response body timed out",
        )),
        Err(BodyError::Broken(m)) => Outcome::FailedUnsent(UpstreamError::new(
            Cause::Closed,
            Stage::Body,
            format!("response body broke off: {m}"),
        )),
    }
}

/// Counts a stream in the worker's `streams` gauge for as long as it is relayed.
struct StreamCount<'w>(&'w Worker);

impl<'w> StreamCount<'w> {
    fn enter(worker: &'w Worker) -> Self {
        let s = &worker.stats.streams;
        s.set(s.get() + 1);
        StreamCount(worker)
    }
}

impl Drop for StreamCount<'_> {
    fn drop(&mut self) {
        let s = &self.0.stats.streams;
        s.set(s.get().saturating_sub(1));
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
    /// is complete. Bytes after the end are dropped and make the connection unusable
    /// (`reusable` cleared) — the answer itself is complete and still relayed.
    fn absorb(
        &mut self,
        raw: &[u8],
        pending: &mut Vec<u8>,
        reusable: &mut bool,
    ) -> Result<bool, String> {
        match self {
            Framing::Length(left) => {
                let take = (*left).min(raw.len() as u64) as usize;
                pending.extend_from_slice(&raw[..take]);
                *left -= take as u64;
                if take < raw.len() {
                    *reusable = false;
                }
                Ok(*left == 0)
            }
            Framing::Chunked(d) => {
                let n = d
                    .decode(raw, pending)
                    .map_err(|e| format!("bad chunked body: {}", e.0))?;
                if d.is_done() && n < raw.len() {
                    *reusable = false;
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
    /// The upstream finished (framing complete, or close after `[DONE]`).
    Clean,
    /// `[DONE]` went out; the framing may still be open.
    Done,
    Cut(String, bool),
    ClientGone,
}

/// Sends the client's stream head (once the first event is in hand).
async fn start_stream(
    head_bytes: &[u8],
    head: &ResponseHead,
    info: &Info<'_>,
    out: &mut Responder<'_>,
    waited: Duration,
    passthrough: bool,
) -> Duration {
    out.begin(head.status);
    write_forwarded_headers(head_bytes, head, out, true);
    let overhead = info.write_headers(out, waited);
    let ct = if passthrough {
        head.header(head_bytes, b"content-type")
            .unwrap_or(b"text/event-stream")
    } else {
        b"text/event-stream"
    };
    out.start_stream(ct).await;
    overhead
}

async fn relay_sse(
    worker: &Worker,
    mut conn: Conn,
    head: ResponseHead,
    info: &Info<'_>,
    out: &mut Responder<'_>,
    guard: &mut ClientGuard<'_, '_>,
    tc: &mut Transcode,
) -> Outcome {
    let ch = info.channel;
    let deadline = info.started + ch.timeouts.total;
    let _counted = StreamCount::enter(worker);
    let passthrough = tc.passthrough();
    let mut translated: Vec<u8> = Vec::new();
    let mut bad: Option<String> = None;
    let mut last_relayed: Option<Instant> = None;
    // The client's head waits for the first event: an upstream that answers 200 and then
    // breaks before any event can still fail over to another channel.
    guard.arm();
    let waiting_since = Instant::now();
    let head_bytes = conn.buf[..head.len].to_vec();
    let mut sent = false;

    let mut framing = match head.body {
        Body::Length(n) => Framing::Length(n),
        Body::Chunked => Framing::Chunked(Decoder::new()),
        Body::Close => Framing::Close,
        Body::None => Framing::Length(0),
    };
    // Grows when an event is bigger; most are a few hundred bytes, and a stream holds this
    // for its whole life.
    let mut pending: Vec<u8> = Vec::with_capacity(2 * 1024);
    let mut reusable = head.keep_alive;
    let mut complete = matches!(framing, Framing::Length(0));
    let first = conn.buf.split_off(head.len);
    conn.buf.clear();
    let mut scan_from = 0;
    let mut end = match framing.absorb(&first, &mut pending, &mut reusable) {
        Ok(c) => {
            complete |= c;
            None
        }
        Err(m) => Some(End::Cut(m, false)),
    };

    while end.is_none() {
        // Forward every complete event now.
        if let Some(e) = sse::complete_end(&pending, scan_from) {
            let done = if passthrough {
                tc.observe(&pending[..e]);
                sse::has_done(&pending[..e])
            } else {
                translated.clear();
                match tc.events(&pending[..e], &mut translated) {
                    Ok(done) => done,
                    // What the events before the bad one produced still goes out (below), and
                    // the block is drained: nothing is fed to the translator twice.
                    Err(m) => {
                        bad = Some(format!("a stream event could not be read: {m}"));
                        false
                    }
                }
            };
            if !sent {
                tc.overhead = Some(
                    start_stream(
                        &head_bytes,
                        &head,
                        info,
                        out,
                        waiting_since.elapsed(),
                        passthrough,
                    )
                    .await,
                );
                sent = true;
            }
            if passthrough {
                out.stream_data(&pending[..e]).await;
            } else if !translated.is_empty() {
                out.stream_data(&translated).await;
            }
            // The gap the client saw between two relayed event batches.
            let now = Instant::now();
            if let Some(prev) = last_relayed.replace(now) {
                worker
                    .stats
                    .gaps
                    .observe(now.saturating_duration_since(prev));
            }
            pending.drain(..e);
            if out.failed {
                end = Some(End::ClientGone);
                break;
            }
            if let Some(why) = bad.take() {
                end = Some(End::Cut(why, false));
                break;
            }
            if done {
                end = Some(if complete { End::Clean } else { End::Done });
                break;
            }
        }
        scan_from = pending.len();
        if complete {
            end = Some(End::Clean);
            break;
        }
        if pending.len() > MAX_RESPONSE_BODY {
            end = Some(End::Cut("an SSE event larger than 64 MiB".into(), false));
            break;
        }
        let wait = ch
            .timeouts
            .idle
            .min(deadline.saturating_duration_since(Instant::now()));
        let got = guard
            .run(std::pin::pin!(monoio::time::timeout(
                wait,
                conn.read_more()
            )))
            .await;
        match got {
            None => end = Some(End::ClientGone),
            Some(Err(_)) => {
                end = Some(if Instant::now() >= deadline {
                    End::Cut("the upstream exceeded its total timeout".into(), true)
                } else {
                    End::Cut(
                        format!("the upstream sent nothing for {:?}", ch.timeouts.idle),
                        true,
                    )
                })
            }
            Some(Ok(Err(e))) => end = Some(End::Cut(format!("read failed: {e}"), false)),
            Some(Ok(Ok(0))) => {
                reusable = false;
                // A close-delimited stream ends with the close; whether that is clean depends
                // on whether its last complete event was [DONE] (checked below).
                end = Some(if matches!(framing, Framing::Close) {
                    let done = if passthrough {
                        sse::complete_end(&pending, 0).is_some_and(|e| sse::has_done(&pending[..e]))
                    } else {
                        tc.ended()
                    };
                    if done {
                        End::Clean
                    } else {
                        End::Cut("the upstream closed the stream before [DONE]".into(), false)
                    }
                } else {
                    End::Cut(
                        "the upstream closed the connection mid-stream".into(),
                        false,
                    )
                });
            }
            Some(Ok(Ok(_))) => {
                let raw = std::mem::take(&mut conn.buf);
                match framing.absorb(&raw, &mut pending, &mut reusable) {
                    Ok(c) => complete = c,
                    Err(m) => {
                        reusable = false;
                        end = Some(End::Cut(m, false));
                    }
                }
                conn.buf = raw;
                conn.buf.clear();
            }
        }
    }
    let end = end.unwrap_or(End::Clean);
    if !sent {
        match end {
            End::ClientGone => return Outcome::ClientGone,
            End::Cut(why, true) => {
                tracing::debug!(channel = %ch.id, reason = %why, "stream failed before its first event");
                return Outcome::FailedUnsent(UpstreamError::new(
                    Cause::Timeout,
                    Stage::Stream,
                    "response body timed out",
                ));
            }
            End::Cut(why, false) => {
                tracing::debug!(channel = %ch.id, reason = %why, "stream failed before its first event");
                return Outcome::FailedUnsent(UpstreamError::new(
                    Cause::Closed,
                    Stage::Stream,
                    why,
                ));
            }
            End::Clean | End::Done => {
                tc.overhead = Some(
                    start_stream(
                        &head_bytes,
                        &head,
                        info,
                        out,
                        waiting_since.elapsed(),
                        passthrough,
                    )
                    .await,
                );
            }
        }
    }
    match end {
        End::ClientGone => {
            // Dropping `conn` closes the upstream connection now.
            tracing::debug!(channel = %ch.id, "client went away mid-stream; upstream closed");
            Outcome::ClientGone
        }
        End::Clean => {
            if passthrough {
                // Trailing bytes without a final blank line are still the upstream's data.
                out.stream_data(&pending).await;
            } else {
                translated.clear();
                if !pending.is_empty() {
                    pending.extend_from_slice(b"\n\n");
                    let _ = tc.events(&pending, &mut translated);
                }
                tc.finish(&mut translated);
                out.stream_data(&translated).await;
            }
            out.end_stream().await;
            if reusable && complete && !out.failed {
                worker.pool.put(&ch.endpoint, conn, Instant::now());
            }
            Outcome::Complete
        }
        End::Done => {
            out.end_stream().await;
            // The client is finished; give the upstream a moment to close its framing so the
            // connection can be reused, and drop it otherwise.
            let grace = Instant::now() + FRAMING_GRACE.min(ch.timeouts.idle);
            let mut rest = Vec::new();
            while !complete && reusable {
                match read_timed(&mut conn, FRAMING_GRACE, grace).await {
                    Ok(n) if n > 0 => {
                        let raw = std::mem::take(&mut conn.buf);
                        match framing.absorb(&raw, &mut rest, &mut reusable) {
                            Ok(c) => complete = c,
                            Err(_) => reusable = false,
                        }
                        conn.buf = raw;
                        conn.buf.clear();
                    }
                    _ => reusable = false,
                }
            }
            if reusable && complete && rest.iter().all(u8::is_ascii_whitespace) {
                worker.pool.put(&ch.endpoint, conn, Instant::now());
            }
            Outcome::Complete
        }
        End::Cut(why, _) => {
            drop(conn);
            let mut finished = tc.closed();
            if let Some(e) = sse::complete_end(&pending, 0) {
                if passthrough {
                    finished |= sse::has_done(&pending[..e]);
                    out.stream_data(&pending[..e]).await;
                } else {
                    translated.clear();
                    let _ = tc.events(&pending[..e], &mut translated);
                    finished |= tc.closed();
                    out.stream_data(&translated).await;
                }
            }
            if finished {
                // The answer was complete before the break: no error after its terminator.
                out.end_stream().await;
                return Outcome::Complete;
            }
            tracing::warn!(channel = %ch.id, reason = %why, "upstream stream cut");
            let err = Error::new(
                502,
                Kind::Server,
                "upstream_stream_cut",
                format!("The upstream stream broke off: {why}."),
            );
            let mut event = Vec::with_capacity(160);
            tc.stream_error(&err, &mut event);
            out.stream_data(&event).await;
            out.end_stream().await;
            Outcome::Broken
        }
    }
}
