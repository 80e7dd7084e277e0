//! One chat exchange of the mock, in any of its formats: parse, apply the knobs (status,
//! per-model status, N failures then success, latency, faults, content encoding), and answer
//! whole or as a paced stream that can be held at a gate, cut, or left without its terminator.
//!
//! Invariants: every fault is deliberate and configured; each format's errors come in its own
//! shape; a held stream notices its peer leaving; an encoded answer is valid in its coding
//! (only its content is broken, when a fault says so).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::ask::{Ask, BodyFault, Encoding, Knobs, UsageStyle, serves};
use super::coding::{self, Compressor};
use super::openai::{completion_json, parse_ask, stream_events};
use super::{MockEvent, Req, Shared, Wire, anthropic, gemini, write_simple};
use crate::h1::chunked;

pub(super) async fn chat<S: AsyncReadRent + AsyncWriteRent>(
    s: &mut S,
    req: &Req,
    shared: &Shared,
    buf: &mut Vec<u8>,
    wire: &Wire,
) -> bool {
    let cfg = &shared.cfg;
    let keep = req.keep_alive;
    let k = Knobs::read(req, cfg);
    let enc = k.encoding;
    if !k.latency.is_zero() && !wait_unless_peer_closes(s, buf, k.latency, None).await {
        shared.note(MockEvent::PeerClosedWhileHeld);
        return false;
    }
    // `fail-times` turns the status knob into "the first N of this counter, then success".
    let status = if k.fail_times > 0 {
        shared
            .fails(&k.fail_key, k.fail_times)
            .then(|| k.status.unwrap_or(503))
    } else {
        k.status
    };
    if let Some(st) = status.filter(|s| *s != 200) {
        let msg = format!("mock upstream injected status {st}");
        return error(s, wire, st, &msg, &k, keep).await;
    }
    let parsed = match wire {
        Wire::OpenAi => parse_ask(&req.body),
        // The Responses API through its translation to chat: what the gateway itself does for
        // providers without it, so the mock answers what a native provider would.
        Wire::Responses => crate::providers::openai::responses::ingress_request(&req.body)
            .map_err(|e| e.message.to_string())
            .and_then(|i| parse_ask(&i.chat)),
        Wire::Anthropic => anthropic::parse(&req.body),
        Wire::Gemini(call) => gemini::parse(&req.body, call),
    };
    let ask = match parsed {
        Ok(a) => Ask {
            usage: k.usage,
            include_usage: a.include_usage && k.usage != UsageStyle::None,
            ..a.with_cache(k.cached, k.cache_write)
        },
        Err(m) => return reply(s, 400, Vec::new(), &wire.error(400, &m), keep, enc).await,
    };
    let not_found = || match wire {
        Wire::OpenAi | Wire::Responses => format!("The model `{}` does not exist", ask.model),
        Wire::Anthropic => format!("model: {}", ask.model),
        Wire::Gemini(_) => format!("models/{} is not found", ask.model),
    };
    if let Some(st) = k.status_for(&ask.model) {
        // A 404 for one model names it, as providers do; other statuses do not.
        let msg = if st == 404 {
            not_found()
        } else {
            format!("mock upstream injected status {st} for this model")
        };
        return error(s, wire, st, &msg, &k, keep).await;
    }
    if !serves(cfg, &ask.model) {
        return reply(
            s,
            404,
            Vec::new(),
            &wire.error(404, &not_found()),
            keep,
            enc,
        )
        .await;
    }
    let id = shared.seq.fetch_add(1, Ordering::Relaxed);
    match k.fault {
        Some(BodyFault::Garbage) if ask.stream => {
            let events = vec![
                b"data: {\"id\": not json at all\n\n".to_vec(),
                b"data: <html>502 Bad Gateway</html>\n\n".to_vec(),
                b"data: [DONE]\n\n".to_vec(),
            ];
            return stream(s, SSE, &events, events.len(), &k, shared, buf).await;
        }
        Some(BodyFault::Garbage) => {
            return reply(s, 200, Vec::new(), b"{\"id\": not json <html>", keep, enc).await;
        }
        Some(BodyFault::Truncate) => {
            let body = completion_json(&ask, id, cfg.chunks);
            let mut out = Vec::with_capacity(body.len() + 200);
            crate::h1::write_status_line(&mut out, 200);
            crate::h1::write_header(&mut out, b"content-type", b"application/json");
            crate::h1::write_header(
                &mut out,
                b"content-length",
                itoa::Buffer::new().format(body.len() * 2).as_bytes(),
            );
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            let _ = s.write_all(out).await;
            return false; // close mid-body
        }
        Some(BodyFault::Huge(n)) if !ask.stream => {
            let mut body = completion_json(&ask, id, cfg.chunks);
            // Pad inside the JSON (a `padding` field) so the answer stays valid.
            if let Some(pos) = memchr::memrchr(b'}', &body) {
                let pad = n.saturating_sub(body.len() + 16);
                let mut tail = b",\"padding\":\"".to_vec();
                tail.resize(tail.len() + pad, b'x');
                tail.extend_from_slice(b"\"}");
                body.truncate(pos);
                body.extend_from_slice(&tail);
            }
            return reply(s, 200, Vec::new(), &body, keep, enc).await;
        }
        _ => {}
    }
    if !ask.stream {
        let mut body = match wire {
            Wire::OpenAi => completion_json(&ask, id, cfg.chunks),
            Wire::Responses => responses_json(&req.body, &ask, id, cfg.chunks),
            Wire::Anthropic => anthropic::message_json(&ask, id, cfg.chunks),
            Wire::Gemini(_) => gemini::response_json(&ask, id, cfg.chunks),
        };
        if k.fault == Some(BodyFault::TruncatedJson) {
            // Exact framing (Content-Length is what is sent), half a document.
            body.truncate(body.len() / 2);
        }
        let extra: Vec<(&str, String)> = match &k.ratelimit_reset {
            Some(reset) => vec![
                ("x-ratelimit-remaining-requests", "0".into()),
                ("x-ratelimit-reset-requests", reset.clone()),
            ],
            None => Vec::new(),
        };
        return reply(s, 200, extra, &body, keep, enc).await;
    }
    let finished = k.fault != Some(BodyFault::NoDone);
    let (content_type, mut events): (&[u8], _) = match wire {
        Wire::OpenAi => (SSE, stream_events(&ask, id, k.chunks)),
        Wire::Responses => (SSE, responses_events(&req.body, &ask, id, k.chunks)),
        Wire::Anthropic => (SSE, anthropic::stream_events(&ask, id, k.chunks)),
        Wire::Gemini(call) if call.sse => (
            SSE,
            gemini::stream_events(&ask, id, k.chunks, true, finished),
        ),
        // Without `alt=sse` Gemini streams one JSON array, element by element.
        Wire::Gemini(_) => (
            b"application/json; charset=UTF-8",
            gemini::stream_events(&ask, id, k.chunks, false, finished),
        ),
    };
    // A provider sends its usage chunk and `[DONE]` right after the finish chunk; pacing them
    // too would show up as one doubled gap per stream wherever the gateway strips the usage
    // chunk the client did not ask for.
    let paced = match wire {
        Wire::OpenAi => events.len() - 1 - usize::from(ask.include_usage),
        _ => events.len(),
    };
    if !finished && matches!(wire, Wire::OpenAi | Wire::Anthropic | Wire::Responses) {
        // The last event is the terminator: `data: [DONE]`, `message_stop`,
        // `response.completed`.
        events.pop();
    }
    let paced = paced.min(events.len());
    stream(s, content_type, &events, paced, &k, shared, buf).await
}

/// An injected error status in `wire`'s shape, with `Retry-After` when asked (on a 429 or a
/// 503; Gemini says it in the body instead).
async fn error<S: AsyncWriteRent>(
    s: &mut S,
    wire: &Wire,
    st: u16,
    msg: &str,
    k: &Knobs,
    keep: bool,
) -> bool {
    let retry = k.retry_after.filter(|_| st == 429 || st == 503);
    let mut extra = Vec::new();
    let body = match wire {
        Wire::Gemini(_) => gemini::error_json(st, msg, retry),
        _ => {
            if let Some(r) = retry {
                extra.push(("retry-after", r.to_string()));
            }
            wire.error(st, msg)
        }
    };
    reply(s, st, extra, &body, keep, k.encoding).await
}

/// A whole answer, compressed when `x-mock-encoding` asks.
pub(super) async fn reply<S: AsyncWriteRent>(
    s: &mut S,
    status: u16,
    mut extra: Vec<(&str, String)>,
    body: &[u8],
    keep: bool,
    enc: Option<Encoding>,
) -> bool {
    match enc {
        None => write_simple(s, status, &extra, body, keep).await,
        Some(e) => {
            extra.push(("content-encoding", e.name().to_string()));
            let encoded = coding::encode(e, body);
            write_simple(s, status, &extra, &encoded, keep).await
        }
    }
}

pub(super) const SSE: &[u8] = b"text/event-stream; charset=utf-8";

/// Sends `events` as one streamed body, faulted by `k` and the first `paced` of them paced
/// by its interval (the rest follow at once).
pub(super) async fn stream<S: AsyncReadRent + AsyncWriteRent>(
    s: &mut S,
    content_type: &[u8],
    events: &[Vec<u8>],
    paced: usize,
    k: &Knobs,
    shared: &Shared,
    buf: &mut Vec<u8>,
) -> bool {
    let chunked_framing = !shared.cfg.close_delimited;
    let mut head = Vec::with_capacity(200);
    crate::h1::write_status_line(&mut head, 200);
    crate::h1::write_header(&mut head, b"content-type", content_type);
    crate::h1::write_header(&mut head, b"cache-control", b"no-cache");
    crate::h1::write_header(&mut head, b"x-request-id", b"mock-upstream-id");
    if let Some(e) = k.encoding {
        crate::h1::write_header(&mut head, b"content-encoding", e.name().as_bytes());
    }
    let mut compressor = k.encoding.map(Compressor::new);
    if chunked_framing {
        crate::h1::write_header(&mut head, b"transfer-encoding", b"chunked");
    } else {
        crate::h1::write_header(&mut head, b"connection", b"close");
    }
    head.extend_from_slice(b"\r\n");
    if s.write_all(head).await.0.is_err() {
        return false;
    }
    for (i, ev) in events.iter().enumerate() {
        if k.cut_after == Some(i) {
            return false; // close without the terminating chunk
        }
        if k.hold_after == Some(i) {
            if !hold(s, shared, buf).await {
                shared.note(MockEvent::PeerClosedWhileHeld);
                return false;
            }
        } else if i > 0 && i < paced && !k.interval.is_zero() {
            monoio::time::sleep(k.interval).await;
        }
        let encoded;
        let ev: &[u8] = match compressor.as_mut() {
            Some(c) => {
                encoded = c.piece(ev);
                &encoded
            }
            None => ev,
        };
        if !write_piece(s, ev, chunked_framing).await {
            shared.note(MockEvent::StreamAborted);
            return false;
        }
    }
    if k.hold_after == Some(events.len()) && !hold(s, shared, buf).await {
        shared.note(MockEvent::PeerClosedWhileHeld);
        return false;
    }
    if let Some(c) = compressor {
        let tail = c.finish();
        if !tail.is_empty() && !write_piece(s, &tail, chunked_framing).await {
            shared.note(MockEvent::StreamAborted);
            return false;
        }
    }
    if chunked_framing {
        s.write_all(chunked::LAST_CHUNK).await.0.is_ok()
    } else {
        false
    }
}

/// Writes one piece of a streamed body (a chunk, or raw bytes when close-delimited).
async fn write_piece<S: AsyncWriteRent>(s: &mut S, piece: &[u8], chunked_framing: bool) -> bool {
    if piece.is_empty() {
        // An empty chunk would be the last-chunk marker.
        return true;
    }
    let mut out = Vec::with_capacity(piece.len() + 16);
    if chunked_framing {
        chunked::write_chunk(&mut out, piece);
    } else {
        out.extend_from_slice(piece);
    }
    s.write_all(out).await.0.is_ok()
}

/// Waits for the gate; `false` when the peer closed the connection meanwhile.
pub(super) async fn hold<S: AsyncReadRent>(s: &mut S, shared: &Shared, buf: &mut Vec<u8>) -> bool {
    wait_unless_peer_closes(s, buf, Duration::MAX, Some(&shared.gate)).await
}

/// Waits `d` (or until `gate` opens); `false` as soon as the peer closes the connection.
pub(super) async fn wait_unless_peer_closes<S: AsyncReadRent>(
    s: &mut S,
    buf: &mut Vec<u8>,
    d: Duration,
    gate: Option<&AtomicBool>,
) -> bool {
    let start = std::time::Instant::now();
    loop {
        if gate.is_some_and(|g| g.load(Ordering::SeqCst)) || start.elapsed() >= d {
            return true;
        }
        let step = Duration::from_millis(2).min(d.saturating_sub(start.elapsed()));
        match monoio::time::timeout(step, crate::h1::read_into(s, buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
}

/// A native Responses API answer: the chat answer, as the Responses API says it.
fn responses_json(request: &[u8], ask: &Ask, id: u64, chunks: usize) -> Vec<u8> {
    let chat = completion_json(ask, id, chunks);
    let mut out = Vec::new();
    if let Ok(i) = crate::providers::openai::responses::ingress_request(request) {
        let _ = crate::providers::openai::responses::egress_response(&chat, &i.echo, 1, &mut out);
    }
    out
}

/// A native Responses API stream: the chat events, as the Responses API says them (one event
/// group per chat event, so pacing and cuts apply alike); no `[DONE]`.
fn responses_events(request: &[u8], ask: &Ask, id: u64, chunks: usize) -> Vec<Vec<u8>> {
    use crate::providers::openai::responses::{StreamEncoder, ingress_request};
    let Ok(i) = ingress_request(request) else {
        return Vec::new();
    };
    let mut enc = StreamEncoder::new(i.echo, 1);
    let mut events = Vec::new();
    for e in stream_events(ask, id, chunks) {
        let data = e
            .strip_prefix(b"data: ")
            .map(|d| d.trim_ascii_end())
            .unwrap_or(&e);
        let mut out = Vec::new();
        if data == b"[DONE]" {
            enc.finish(&mut out);
        } else {
            let _ = enc.chunk(data, &mut out);
        }
        if !out.is_empty() {
            events.push(out);
        }
    }
    events
}
