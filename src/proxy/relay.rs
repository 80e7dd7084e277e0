//! Relaying an upstream answer to the client: whole bodies with `Content-Length`, and SSE
//! streams event by event, flushed as they arrive, with the client watched for disconnects.
//! Answers in `gzip` or `deflate` are decoded on the way (`upstream::coding`); any other
//! `Content-Encoding` fails the attempt before a byte reaches the client.
//!
//! Invariants: only complete SSE events are forwarded (an error event after a cut is never
//! glued to half an event); the upstream's events pass unchanged — the gateway adds no
//! `[DONE]` and never a second one; once `[DONE]` went out the client's stream ends, whatever
//! the upstream does next. The client's terminator (`[DONE]`, or its family's) goes out only
//! after the upstream family's own (`[DONE]`, `message_stop`, a `finishReason`): a stream cut
//! by the upstream (EOF or silence before the framing completes) or whose framing ends without
//! that terminator ends with an `upstream_stream_cut` error event instead, and is `Broken`. A
//! non-streamed 2xx answer from an OpenAI-family upstream up to `server.max_validated_body` is
//! parsed before anything is written (other families' answers are parsed to be translated):
//! invalid JSON fails the attempt, so the next candidate may answer. Decoded bytes count
//! against the same caps as plain ones. A connection whose response was not framed exactly
//! (trailing bytes, early close) is never pooled, but a complete answer is still relayed.

use std::time::{Duration, Instant};

use crate::error::{Error, Kind};
use crate::h1::chunked::Decoder;
use crate::h1::head::{Body, ResponseHead};
use crate::h1::sse;
use crate::providers::Family;
use crate::server::Responder;
use crate::server::response::ClientGuard;
use crate::upstream::Conn;
use crate::upstream::body::{BodyAt, BodyError, read_body_at, read_timed};
use crate::upstream::coding::{self, Coding, InflateError, Inflater};
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
    let sse = head.event_stream && (200..300).contains(&head.status);
    let coding = match Coding::of(&head, &conn.buf) {
        Ok(c) => c,
        Err(named) => {
            // Nothing was read or sent: the connection is dropped, and another candidate
            // (or a later request) may get an answer the gateway can read.
            return Outcome::FailedUnsent(UpstreamError::new(
                Cause::Encoding,
                if sse { Stage::Stream } else { Stage::Body },
                format!(
                    "the upstream answered in Content-Encoding `{named}`, which the gateway \
                     does not decode (it asks for identity; gzip and deflate are decoded)"
                ),
            ));
        }
    };
    if sse {
        return relay_sse(worker, conn, head, coding, info, out, guard, tc).await;
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
        Ok((mut at, exact)) => {
            if coding != Coding::Identity {
                let encoded = match &at {
                    BodyAt::Conn(r) => &conn.buf[r.clone()],
                    BodyAt::Out => &decoded[..],
                };
                let plain = match coding::decode_whole(coding, encoded, MAX_RESPONSE_BODY) {
                    Ok(plain) => plain.unwrap_or_default(),
                    Err(e) => {
                        return Outcome::FailedUnsent(inflate_failure(e, coding, Stage::Body));
                    }
                };
                held.grow_to(encoded.len() + plain.len());
                decoded = plain;
                at = BodyAt::Out;
            }
            let range = match &at {
                BodyAt::Conn(r) => r.clone(),
                BodyAt::Out => 0..decoded.len(),
            };
            let body = match at {
                BodyAt::Conn(_) => &conn.buf[range.clone()],
                BodyAt::Out => &decoded[..],
            };
            if let Err(m) = validate(worker, &head, body, info.max_validated, tc) {
                return Outcome::FailedUnsent(UpstreamError::new(
                    Cause::Malformed,
                    Stage::Body,
                    format!(
                        "the upstream's {} answer is not valid JSON: {m}",
                        head.status
                    ),
                ));
            }
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

/// A 2xx answer that passes to the client as the upstream wrote it (an OpenAI-family one:
/// other families are parsed to be translated) is parsed first when it is at most `max`
/// bytes, so a truncated or garbled document fails over instead of reaching the client as a
/// 200. Larger answers are relayed unvalidated (README, failure matrix).
fn validate(
    worker: &Worker,
    head: &ResponseHead,
    body: &[u8],
    max: usize,
    tc: &Transcode,
) -> Result<(), String> {
    if !(200..300).contains(&head.status)
        || head.status == 204
        || tc.upstream() != Family::OpenAi
        || body.len() > max
    {
        return Ok(());
    }
    match worker.json.try_borrow_mut() {
        Ok(mut scratch) => crate::providers::openai::ingress::validate(body, &mut scratch),
        // Never expected (nothing else holds the scratch across an await); a fresh one is
        // slower but as strict.
        Err(_) => crate::providers::openai::ingress::validate(body, &mut Default::default()),
    }
}

/// The attempt failure for a body that could not be decoded.
fn inflate_failure(e: InflateError, coding: Coding, stage: Stage) -> UpstreamError {
    match e {
        InflateError::TooLarge => UpstreamError::new(
            Cause::TooLarge,
            stage,
            format!("the {} answer decodes to more than 64 MiB", coding.name()),
        ),
        InflateError::Corrupt(m) => UpstreamError::new(
            Cause::Malformed,
            stage,
            format!("the {} answer could not be decoded: {m}", coding.name()),
        ),
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
    /// The stream broke off; why, and what broke (`Timeout`, `Closed`, `Malformed`,
    /// `TooLarge`), for the failure when nothing reached the client yet.
    Cut(String, Cause),
    ClientGone,
}

/// Upstream bytes on their way to `pending`: through the framing, then the content coding.
struct Intake {
    framing: Framing,
    /// The decoder of a `gzip`/`deflate` answer.
    inflater: Option<Inflater>,
    coding: Coding,
    /// De-framed bytes still encoded (only with an inflater; reused).
    encoded: Vec<u8>,
}

impl Intake {
    /// Takes raw upstream bytes; appends decoded payload to `pending`. `Ok(true)` once the
    /// framing is complete (and the encoded stream with it).
    fn take(
        &mut self,
        raw: &[u8],
        pending: &mut Vec<u8>,
        reusable: &mut bool,
    ) -> Result<bool, (String, Cause)> {
        // A framing error is the connection's: counted as a close, as it always was.
        let Some(inf) = self.inflater.as_mut() else {
            return self
                .framing
                .absorb(raw, pending, reusable)
                .map_err(|m| (m, Cause::Closed));
        };
        self.encoded.clear();
        let complete = self
            .framing
            .absorb(raw, &mut self.encoded, reusable)
            .map_err(|m| (m, Cause::Closed))?;
        let decoded = inf
            .push(&self.encoded, pending, MAX_RESPONSE_BODY)
            .and_then(|()| if complete { inf.finish() } else { Ok(()) });
        decoded.map_err(|e| {
            let f = inflate_failure(e, self.coding, Stage::Stream);
            (f.detail, f.cause)
        })?;
        Ok(complete)
    }

    /// The stream's body ended with the connection (close-delimited): the encoded stream must
    /// be complete too.
    fn closed(&self) -> Result<(), (String, Cause)> {
        match &self.inflater {
            Some(inf) => inf.finish().map_err(|e| {
                let f = inflate_failure(e, self.coding, Stage::Stream);
                (f.detail, f.cause)
            }),
            None => Ok(()),
        }
    }
}

/// The upstream's body ended: its last bytes, if they lack the blank line that ends an SSE
/// event, still are the upstream's last event; give them one so they are relayed (and read
/// for a terminator) like any other.
fn seal_tail(pending: &mut Vec<u8>) {
    while matches!(pending.last(), Some(b'\n' | b'\r')) {
        pending.pop();
    }
    if !pending.is_empty() {
        pending.extend_from_slice(b"\n\n");
    }
}

/// What ends a stream of the upstream's family.
fn terminator(family: Family) -> &'static str {
    match family {
        Family::OpenAi => "`data: [DONE]`",
        Family::Anthropic => "`message_stop`",
        Family::Gemini => "a `finishReason`",
    }
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

#[allow(clippy::too_many_arguments)] // the one relay call, with what `respond` holds
async fn relay_sse(
    worker: &Worker,
    mut conn: Conn,
    head: ResponseHead,
    coding: Coding,
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
    // The upstream's own terminator went by (`tc.observe` on the passthrough path, the
    // translator on the others; `tc.ended()` also knows Gemini's finishReason).
    let mut terminated = false;

    let mut intake = Intake {
        framing: match head.body {
            Body::Length(n) => Framing::Length(n),
            Body::Chunked => Framing::Chunked(Decoder::new()),
            Body::Close => Framing::Close,
            Body::None => Framing::Length(0),
        },
        inflater: Inflater::new(coding),
        coding,
        encoded: Vec::new(),
    };
    // Grows when an event is bigger; most are a few hundred bytes, and a stream holds this
    // for its whole life.
    let mut pending: Vec<u8> = Vec::with_capacity(2 * 1024);
    let mut reusable = head.keep_alive;
    let mut complete = matches!(intake.framing, Framing::Length(0));
    let first = conn.buf.split_off(head.len);
    conn.buf.clear();
    let mut scan_from = 0;
    let mut end = match intake.take(&first, &mut pending, &mut reusable) {
        Ok(c) => {
            complete |= c;
            None
        }
        Err((m, cause)) => Some(End::Cut(m, cause)),
    };
    if complete {
        seal_tail(&mut pending);
    }

    while end.is_none() {
        // Forward every complete event now.
        if let Some(e) = sse::complete_end(&pending, scan_from) {
            let done = if passthrough {
                tc.observe(&pending[..e])
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
            terminated |= done;
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
                end = Some(End::Cut(why, Cause::Malformed));
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
            end = Some(End::Cut(
                "an SSE event larger than 64 MiB".into(),
                Cause::TooLarge,
            ));
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
                    End::Cut(
                        "the upstream exceeded its total timeout".into(),
                        Cause::Timeout,
                    )
                } else {
                    End::Cut(
                        format!("the upstream sent nothing for {:?}", ch.timeouts.idle),
                        Cause::Timeout,
                    )
                })
            }
            Some(Ok(Err(e))) => end = Some(End::Cut(format!("read failed: {e}"), Cause::Closed)),
            Some(Ok(Ok(0))) => {
                reusable = false;
                if matches!(intake.framing, Framing::Close) {
                    // A close-delimited stream ends with the close: whether that is clean
                    // depends on its last events (a terminator, judged after the loop).
                    match intake.closed() {
                        Ok(()) => {
                            complete = true;
                            seal_tail(&mut pending);
                            scan_from = 0;
                        }
                        Err((m, cause)) => end = Some(End::Cut(m, cause)),
                    }
                } else {
                    end = Some(End::Cut(
                        "the upstream closed the connection mid-stream".into(),
                        Cause::Closed,
                    ));
                }
            }
            Some(Ok(Ok(_))) => {
                let raw = std::mem::take(&mut conn.buf);
                match intake.take(&raw, &mut pending, &mut reusable) {
                    Ok(c) => {
                        complete = c;
                        if c {
                            seal_tail(&mut pending);
                            scan_from = 0;
                        }
                    }
                    Err((m, cause)) => {
                        reusable = false;
                        end = Some(End::Cut(m, cause));
                    }
                }
                conn.buf = raw;
                conn.buf.clear();
            }
        }
    }
    let mut end = end.unwrap_or(End::Clean);
    // The framing ended, but the upstream never said its answer was complete: a cut, not a
    // clean end (the client must not take a truncated answer for a whole one).
    let terminated = terminated || tc.ended();
    if matches!(end, End::Clean) && !terminated {
        let why = format!(
            "the upstream's stream ended without {}",
            terminator(tc.upstream())
        );
        end = End::Cut(why, Cause::Closed);
    }
    if !sent {
        match end {
            End::ClientGone => return Outcome::ClientGone,
            End::Cut(why, cause) => {
                tracing::debug!(channel = %ch.id, reason = %why, "stream failed before its first event");
                let detail = if cause == Cause::Timeout {
                    "response body timed out".to_string()
                } else {
                    why
                };
                return Outcome::FailedUnsent(UpstreamError::new(cause, Stage::Stream, detail));
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
                // Bytes after `[DONE]` in its batch went out with it; whatever is left is
                // whitespace, still the upstream's.
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
                        match intake.take(&raw, &mut rest, &mut reusable) {
                            Ok(c) => complete = c,
                            Err(_) => reusable = false,
                        }
                        conn.buf = raw;
                        conn.buf.clear();
                        if rest.len() > MAX_RESPONSE_BODY {
                            reusable = false;
                        }
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
                    finished |= tc.observe(&pending[..e]);
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
            // A request id and the channel, never a key: what an operator needs to find it.
            tracing::warn!(
                channel = %ch.id,
                model = %info.model,
                request_id = %info.id,
                reason = %why,
                "upstream stream cut"
            );
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
