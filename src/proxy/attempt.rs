//! One attempt on one channel: the upstream request (the channel's pre-rendered head, the
//! forwarded client headers, the body in the channel's family), sending it over a pooled or
//! fresh connection, reading the response head, and reading a failed attempt's body.
//!
//! Invariants: OpenAI-family bodies are the client's bytes with targeted edits only (model,
//! router fields, the gateway's `stream_options`); a reused pooled connection that proves dead
//! before any response byte is retried once on a fresh one (not an attempt); a connection goes
//! back to the pool only after a complete, exact, keep-alive response.

use std::time::{Duration, Instant};

use simd_json::prelude::*;

use super::failure::{Cause, Kept, Stage, UpstreamError};
use super::{Call, Endpoint, MAX_ERROR_BODY, MAX_RESPONSE_HEAD, relay};
use crate::channel::Channel;
use crate::error::Error;
use crate::h1::head::ResponseHead;
use crate::json;
use crate::providers::openai::ingress::{Edit, Features, JsonScratch, extract};
use crate::providers::{Family, anthropic, gemini};
use crate::server::Request;
use crate::upstream::Conn;
use crate::upstream::coding::{Coding, decode_whole};
use crate::worker::Worker;

/// Builds the upstream request into `out`: the channel's head, forwarded client headers, and
/// the body in the channel's family. `native` (the client's own body, when the channel speaks
/// the client's API) goes with targeted edits only (model, router fields); OpenAI-family
/// bodies are the canonical bytes with targeted edits (model, router fields, and
/// `stream_options` when the gateway wants the usage); other families get a translation of the
/// parsed request. `traceparent` (telemetry on: the attempt's span as the parent) replaces the
/// client's. Returns whether `stream_options` was added; a request the channel's family cannot
/// express is the client's 400.
#[allow(clippy::too_many_arguments)] // the one call, with what `attempt` holds
pub(super) fn build_request(
    out: &mut Vec<u8>,
    ch: &Channel,
    req: &Request<'_>,
    call: &Call<'_>,
    parsed: &mut Option<simd_json::OwnedValue>,
    model: &str,
    request_id: &[u8],
    native: Option<&[u8]>,
    traceparent: Option<&[u8]>,
) -> Result<bool, Error> {
    let (mut body, mut f) = (call.body, call.features);
    let endpoint = call.wire_endpoint(native.is_some());
    // An Anthropic client's cache breakpoints travel on the canonical content parts; an
    // OpenAI-family provider that does not take them would refuse the unknown member.
    let uncached;
    if native.is_none()
        && ch.family == Family::OpenAi
        && call.client == Family::Anthropic
        && !crate::presets::takes_cache_control(&ch.kind)
        && memchr::memmem::find(body, b"\"cache_control\"").is_some()
    {
        uncached = without_cache_control(body)?;
        (body, f) = (&uncached.0, &uncached.1);
    }
    out.clear();
    let mut translated = Vec::new();
    // Usage is never optional: every stream that can carry it asks for it, whatever the
    // client sent (`false`, `{}`, `null`, duplicates); the client's other `stream_options`
    // members are kept inside the one the gateway writes.
    let inject = ch.family == Family::OpenAi
        && matches!(endpoint, Endpoint::Chat | Endpoint::Completions)
        && f.stream
        && ch.stream_usage;
    if let Some(native) = native {
        // Same family: the client's own bytes, with the documented edits only (`model`, router
        // fields); everything the gateway does not know — `cache_control`, `thinking` and its
        // signatures, `top_k`, `metadata`, citations — reaches the upstream untouched.
        edit_native(native, model, &mut translated);
    } else if ch.family != Family::OpenAi {
        if parsed.is_none() {
            let mut copy = body.to_vec();
            *parsed = Some(simd_json::to_owned_value(&mut copy).map_err(|e| {
                Error::bad_request(
                    "invalid_json",
                    format!("The request body is not valid JSON ({e})."),
                )
            })?);
        }
        if let Some(v) = parsed.as_ref() {
            match ch.family {
                Family::Anthropic => anthropic::encode_request(v, model, &mut translated)?,
                Family::Gemini => gemini::encode_request(v, &mut translated)?,
                Family::OpenAi => {}
            }
        }
    }
    match &ch.path {
        _ if endpoint != Endpoint::Chat => {
            out.extend_from_slice(b"POST ");
            out.extend_from_slice(ch.base_path.as_bytes());
            out.extend_from_slice(endpoint.path().as_bytes());
            out.extend_from_slice(b" HTTP/1.1\r\n");
            out.extend_from_slice(&ch.request_head[ch.credentials_at..]);
        }
        Some(t) => {
            t.write_line(out, model, f.stream);
            out.extend_from_slice(&ch.request_head);
        }
        None => out.extend_from_slice(&ch.request_head),
    }
    out.extend_from_slice(
        b"Content-Type: application/json\r\nAccept-Encoding: identity\r\nx-request-id: ",
    );
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\n");
    let named_by_connection = |name: &[u8]| {
        req.head.headers.iter().any(|h| {
            req.buf[h.name.clone()].eq_ignore_ascii_case(b"connection")
                && crate::h1::has_token(&req.buf[h.value.clone()], name)
        })
    };
    if let Some(tp) = traceparent {
        crate::h1::write_header(out, b"traceparent", tp);
    }
    for h in &req.head.headers {
        let name = &req.buf[h.name.clone()];
        if !crate::h1::forwarding::forward_request(name, &ch.forward_headers)
            || (traceparent.is_some() && name.eq_ignore_ascii_case(b"traceparent"))
            || named_by_connection(name)
            || ch
                .managed_headers
                .iter()
                .any(|m| m.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        crate::h1::write_header(out, name, &req.buf[h.value.clone()]);
    }
    if native.is_some() || ch.family != Family::OpenAi {
        // A channel's extra members are chat parameters: other endpoints reject unknown fields.
        let brace = object_start(&translated)
            .filter(|_| !ch.extra_body.is_empty() && endpoint == Endpoint::Chat);
        let extra = if brace.is_some() {
            ch.extra_body.len()
        } else {
            0
        };
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(translated.len() + extra)
                .as_bytes(),
        );
        out.extend_from_slice(b"\r\n\r\n");
        match brace {
            Some(b) => {
                out.extend_from_slice(&translated[..=b]);
                out.extend_from_slice(&ch.extra_body);
                out.extend_from_slice(&translated[b + 1..]);
            }
            None => out.extend_from_slice(&translated),
        }
        return Ok(false);
    }
    let mut quoted = Vec::with_capacity(model.len() + 2);
    json::write_str(&mut quoted, model);
    let usage_member = if inject {
        stream_usage_member(body, f.stream_options.clone())
    } else {
        Vec::new()
    };
    // The client's `stream_options` stay verbatim unless the gateway writes its own.
    let dropped = |e: &Edit| match e {
        Edit::StreamOptions(_) => inject,
        Edit::Model(_) | Edit::Remove(_) => true,
    };
    let mut len = body.len();
    for e in f.edits.iter().filter(|e| dropped(e)) {
        len -= e.range().len();
        if let Edit::Model(_) = e {
            len += quoted.len();
        }
    }
    // A channel's extra members are chat parameters: other endpoints reject unknown fields.
    let extra: &[u8] = if endpoint == Endpoint::Chat {
        &ch.extra_body
    } else {
        b""
    };
    // The body is a JSON object with members (extract checked): added members go right after
    // its `{`, each with its comma, so the client's own members (later) win.
    let prefix_len = extra.len() + usage_member.len();
    let brace = object_start(body).filter(|_| prefix_len > 0);
    if brace.is_some() {
        len += prefix_len;
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    let mut at = 0;
    if let Some(b) = brace {
        out.extend_from_slice(&body[..=b]);
        out.extend_from_slice(extra);
        out.extend_from_slice(&usage_member);
        at = b + 1;
    }
    for e in f.edits.iter().filter(|e| dropped(e)) {
        let r = e.range();
        out.extend_from_slice(&body[at..r.start]);
        if let Edit::Model(_) = e {
            out.extend_from_slice(&quoted);
        }
        at = r.end;
    }
    out.extend_from_slice(&body[at..]);
    Ok(inject && brace.is_some())
}

/// A canonical chat body without `cache_control` on any message's content parts, and its
/// features (the edits' ranges are into the new body).
fn without_cache_control(body: &[u8]) -> Result<(Vec<u8>, Features), Error> {
    let mut copy = body.to_vec();
    let mut v = simd_json::to_owned_value(&mut copy).map_err(|e| {
        Error::bad_request(
            "invalid_json",
            format!("The request body is not valid JSON ({e})."),
        )
    })?;
    if let Some(messages) = v.get_mut("messages").and_then(|m| m.as_array_mut()) {
        for m in messages {
            if let Some(parts) = m.get_mut("content").and_then(|c| c.as_array_mut()) {
                for p in parts {
                    if let Some(o) = p.as_object_mut() {
                        o.remove("cache_control");
                    }
                }
            }
        }
    }
    let out = v.encode().into_bytes();
    let f = extract(&out, &mut JsonScratch::default())?;
    Ok((out, f))
}

/// `native` with its top-level `model` value replaced by `model` (as a JSON string) and its
/// router fields removed, appended to `out`.
fn edit_native(native: &[u8], model: &str, out: &mut Vec<u8>) {
    out.reserve(native.len() + model.len());
    let mut at = 0;
    for e in crate::providers::openai::ingress::native_edits(native) {
        let r = e.range();
        out.extend_from_slice(&native[at..r.start]);
        if let Edit::Model(_) = e {
            json::write_str(out, model);
        }
        at = r.end;
    }
    out.extend_from_slice(&native[at..]);
}

/// The `"stream_options":{"include_usage":true,…},` member the gateway writes at the start of a
/// streamed OpenAI-family body, carrying the other members of the client's own object
/// (`stream_options` holds that object's range in `body`).
fn stream_usage_member(body: &[u8], client: Option<std::ops::Range<usize>>) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(b"\"stream_options\":{\"include_usage\":true");
    if let Some(r) = client {
        let value = &body[r];
        for member in crate::providers::openai::scan::top_level_members(value) {
            if !crate::providers::openai::scan::key_matches(
                &value[member.key.clone()],
                b"include_usage",
            ) {
                m.push(b',');
                m.extend_from_slice(&value[member.start..member.value.end]);
            }
        }
    }
    m.extend_from_slice(b"},");
    m
}

/// The position of the `{` opening a JSON object that has at least one member (so members
/// with trailing commas can follow it).
fn object_start(body: &[u8]) -> Option<usize> {
    let b = body.iter().position(|c| !c.is_ascii_whitespace())?;
    if body[b] != b'{' {
        return None;
    }
    let next = body[b + 1..].iter().find(|c| !c.is_ascii_whitespace())?;
    (*next != b'}').then_some(b)
}

/// Sends the request and reads the response head, retrying once on a fresh connection when a
/// reused one turns out dead.
pub(super) async fn attempt_once(
    worker: &Worker,
    ch: &Channel,
    outgoing: &mut Vec<u8>,
    started: Instant,
) -> Result<(Conn, ResponseHead), UpstreamError> {
    let ep = &ch.endpoint;
    let t = ch.timeouts;
    let mut conn = match worker.pool.take_idle(ep, started) {
        Some(c) => c,
        None => worker
            .pool
            .connect(ep, t.connect)
            .await
            .map_err(UpstreamError::connect)?,
    };
    let mut retried = false;
    loop {
        let budget = t.first_byte.min(t.total.saturating_sub(started.elapsed()));
        let data = std::mem::take(outgoing);
        let r = monoio::time::timeout(budget, send_and_read_head(&mut conn, data)).await;
        let stale = match r {
            Ok((Ok(head), data)) => {
                *outgoing = data;
                // A 408 on a reused connection is the server timing out the idle connection,
                // not an answer to this request.
                if head.status == 408 && conn.reused && !retried {
                    true
                } else {
                    return Ok((conn, head));
                }
            }
            Ok((Err(e), data)) => {
                *outgoing = data;
                if conn.reused && !retried && conn.buf.is_empty() {
                    true
                } else {
                    return Err(UpstreamError {
                        reused: conn.reused,
                        ..e
                    });
                }
            }
            Err(_) => {
                // The request buffer was inside the cancelled future; a timeout moves on to
                // another channel, whose request is built afresh.
                *outgoing = Vec::new();
                return Err(UpstreamError {
                    reused: conn.reused,
                    ..UpstreamError::new(Cause::Timeout, Stage::Head, "first byte timed out")
                });
            }
        };
        debug_assert!(stale);
        // A pooled connection the server had closed or timed out: one fresh retry, which does
        // not count as an attempt.
        retried = true;
        conn = worker
            .pool
            .connect(ep, t.connect)
            .await
            .map_err(UpstreamError::connect)?;
    }
}

async fn send_and_read_head(
    conn: &mut Conn,
    data: Vec<u8>,
) -> (Result<ResponseHead, UpstreamError>, Vec<u8>) {
    let (w, data) = conn.write_all(data).await;
    if let Err(e) = w {
        let e = UpstreamError::new(Cause::Closed, Stage::Send, format!("write failed: {e}"));
        return (Err(e), data);
    }
    let head_error = |cause, detail: String| Err(UpstreamError::new(cause, Stage::Head, detail));
    loop {
        match ResponseHead::parse(&conn.buf, MAX_RESPONSE_HEAD, false) {
            Ok(Some(h)) if h.status == 101 => {
                let why = "unexpected protocol switch (101)".to_string();
                return (head_error(Cause::Malformed, why), data);
            }
            Ok(Some(h)) if (100..200).contains(&h.status) => {
                // Interim response (e.g. 100 Continue): skip it.
                conn.buf.drain(..h.len);
                continue;
            }
            Ok(Some(h)) => return (Ok(h), data),
            Ok(None) => {}
            Err(e) => {
                let why = format!("bad response head: {e:?}");
                return (head_error(Cause::Malformed, why), data);
            }
        }
        match conn.read_more().await {
            Ok(0) => {
                let why = "connection closed before a response".to_string();
                return (head_error(Cause::Closed, why), data);
            }
            Ok(_) => {}
            Err(e) => return (head_error(Cause::Closed, format!("read failed: {e}")), data),
        }
    }
}

/// Reads a failed attempt's body (bounded) so it can be returned if no later attempt answers;
/// pools the connection when it was read cleanly.
pub(super) async fn read_kept(
    worker: &Worker,
    ch: &Channel,
    mut conn: Conn,
    head: &ResponseHead,
) -> Kept {
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = relay::forwarded(&conn.buf, head)
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    if let Some(ct) = head.header(&conn.buf, b"content-type") {
        headers.push((b"content-type".to_vec(), ct.to_vec()));
    }
    let status = head.status;
    let mut body = Vec::new();
    let deadline = Instant::now() + ch.timeouts.idle.min(Duration::from_secs(10));
    let exact =
        crate::upstream::body::read_body(&mut conn, head, &mut body, MAX_ERROR_BODY, deadline)
            .await;
    // An encoded error body is decoded (bounded like a plain one); one that cannot be is
    // dropped rather than relayed as bytes the client was never told how to read.
    match Coding::of(head, &conn.buf).map(|c| decode_whole(c, &body, MAX_ERROR_BODY)) {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(plain))) => body = plain,
        Ok(Err(_)) | Err(_) => body.clear(),
    }
    if matches!(exact, Ok(true)) && head.keep_alive {
        worker.pool.put(&ch.endpoint, conn, Instant::now());
    }
    Kept {
        status,
        headers,
        body,
        retry_after: None,
    }
}

/// When an upstream answer says its rate limit is spent (`x-ratelimit-remaining-requests` or
/// `-tokens` is 0), how long until it resets (`x-ratelimit-reset-*`, Go-style durations such as
/// `6m0s`, `1.5s`, `20ms`; one second when absent or unreadable).
pub(super) fn quota_exhausted(
    head: &crate::h1::head::ResponseHead,
    buf: &[u8],
) -> Option<Duration> {
    let spent = |kind: &str| {
        head.header(buf, format!("x-ratelimit-remaining-{kind}").as_bytes())
            .is_some_and(|v| v.trim_ascii() == b"0")
            .then(|| {
                head.header(buf, format!("x-ratelimit-reset-{kind}").as_bytes())
                    .and_then(go_duration)
                    .unwrap_or(Duration::from_secs(1))
            })
    };
    match (spent("requests"), spent("tokens")) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A Go-style duration (`1h2m3.5s`, `20ms`, `450us`) or bare seconds.
fn go_duration(v: &[u8]) -> Option<Duration> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total.min(86_400.0)))
}

#[cfg(test)]
mod quota_tests {
    use super::*;

    #[test]
    fn go_durations_as_providers_send_them() {
        let d = |s: &str| go_duration(s.as_bytes());
        assert_eq!(d("1s"), Some(Duration::from_secs(1)));
        assert_eq!(d("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(d("1m30.5s"), Some(Duration::from_secs_f64(90.5)));
        assert_eq!(d("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(d("2"), Some(Duration::from_secs(2)));
        assert_eq!(d("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(d("soon"), None);
        assert_eq!(d("5x"), None);
        assert_eq!(d("-1"), None);
    }

    #[test]
    fn a_spent_quota_names_its_reset() {
        let head = |h: &str| {
            let raw = format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n{h}\r\n");
            let parsed = crate::h1::head::ResponseHead::parse(raw.as_bytes(), 8192, false)
                .expect("valid")
                .expect("complete");
            quota_exhausted(&parsed, raw.as_bytes())
        };
        assert_eq!(head("x-ratelimit-remaining-requests: 5\r\n"), None);
        assert_eq!(
            head("x-ratelimit-remaining-requests: 0\r\nx-ratelimit-reset-requests: 6m0s\r\n"),
            Some(Duration::from_secs(360))
        );
        assert_eq!(
            head("x-ratelimit-remaining-tokens: 0\r\n"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(head(""), None);
    }
}
