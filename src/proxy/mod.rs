//! One proxied request's lifecycle: plan the candidates, and for each until one answers: build
//! the upstream request (original body, only `model` rewritten), send it over a pooled
//! connection, classify the answer (DESIGN.md §6), and relay it — whole, or SSE event by event.
//!
//! Invariants:
//! * Failover happens only before the first byte reached the client; a stream that breaks later
//!   ends with an SSE error event and no `[DONE]`.
//! * A failed attempt on a *reused* pooled connection that produced no response byte is retried
//!   once on a fresh connection (the server may have closed it while idle); this does not count
//!   as an attempt.
//! * A connection returns to the pool only after a complete, keep-alive response.
//! * The client going away mid-stream closes the upstream connection at once.
//!
//! Not here: choosing candidates (`routing`), sockets and TLS (`upstream`), HTTP heads
//! (`h1`), response writing (`server::response`).

mod relay;

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::api::chat::Features;
use crate::error::{Error, Kind};
use crate::h1::head::ResponseHead;
use crate::json;
use crate::routing;
use crate::server::response::ClientGuard;
use crate::server::{Exchange, Request, Responder};
use crate::snapshot::{Channel, Snapshot};
use crate::upstream::{Conn, ConnectError};
use crate::worker::{SnapshotRef, Worker};

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Largest non-streamed upstream response body relayed.
const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;
/// Largest error body kept from a failed attempt (returned if it was the last one).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How one attempt failed.
#[derive(Debug)]
enum Failure {
    Connect(ConnectError),
    /// The connection broke before a complete response head (reset, EOF, bad head).
    Broken(String),
    Timeout(&'static str),
    /// An upstream status that moves to the next candidate; its response is kept in case it
    /// was the last.
    Status(Kept),
}

#[derive(Debug)]
struct Kept {
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Connect(e) => e.to_string(),
            Failure::Broken(m) => m.clone(),
            Failure::Timeout(what) => format!("{what} timed out"),
            Failure::Status(k) => format!("HTTP {}", k.status),
        }
    }
}

/// Statuses that move the request to the next candidate (DESIGN.md §6).
fn fails_over(status: u16) -> bool {
    matches!(status, 401 | 402 | 403 | 404 | 429) || status >= 500
}

/// Proxies a chat-completions request.
pub async fn chat(
    worker: &Rc<Worker>,
    snap: &SnapshotRef,
    req: &Request<'_>,
    features: &Features,
    ex: &mut Exchange<'_>,
) {
    let Exchange { out, input } = ex;
    let mut plan = Vec::with_capacity(4);
    if let Err(e) = routing::plan(snap, &features.model, worker.next_rotation(), &mut plan) {
        return out.send_error(&e).await;
    }
    let mut guard = ClientGuard::new(input);
    let mut outgoing = Vec::with_capacity(req.body.len() + 1024);
    let mut failures: Vec<(usize, Failure)> = Vec::new();
    for (n, attempt) in plan.iter().enumerate() {
        let ch = &snap.channels[attempt.channel];
        build_request(
            &mut outgoing,
            ch,
            req,
            features,
            attempt.model,
            out.request_id.as_bytes(),
        );
        let started = Instant::now();
        let info = Info {
            channel: ch,
            model: attempt.model,
            requested: &features.model,
            attempts: n + 1,
            started,
        };
        let Some(result) = guard
            .run(attempt_once(worker, ch, &mut outgoing, started))
            .await
        else {
            tracing::debug!(channel = %ch.id, "client left while waiting for the upstream");
            return guard.finish().await;
        };
        match result {
            Err(f) => {
                tracing::debug!(channel = %ch.id, failure = %f.describe(), "attempt failed");
                failures.push((attempt.channel, f));
            }
            Ok((conn, head)) if fails_over(head.status) => {
                let Some(kept) = guard.run(read_kept(worker, ch, conn, &head)).await else {
                    return guard.finish().await;
                };
                tracing::debug!(channel = %ch.id, status = head.status, "upstream status fails over");
                failures.push((attempt.channel, Failure::Status(kept)));
            }
            Ok((conn, head)) => {
                relay::respond(worker, ch, conn, head, &info, out, &mut guard).await;
                return guard.finish().await;
            }
        }
    }
    guard.finish().await;
    give_up(snap, &features.model, failures, out).await;
}

/// Response-header facts about the attempt that answered.
pub(crate) struct Info<'a> {
    pub(crate) channel: &'a Channel,
    pub(crate) model: &'a str,
    pub(crate) requested: &'a str,
    pub(crate) attempts: usize,
    pub(crate) started: Instant,
}

impl Info<'_> {
    pub(crate) fn write_headers(&self, out: &mut crate::server::Responder<'_>) {
        out.header(b"x-router-channel", self.channel.id.as_bytes());
        out.header(b"x-router-provider", self.channel.provider.as_bytes());
        out.header(b"x-router-model", self.model.as_bytes());
        out.header(b"x-router-requested-model", self.requested.as_bytes());
        out.header(
            b"x-router-attempts",
            itoa::Buffer::new().format(self.attempts).as_bytes(),
        );
    }
}

/// Headers never forwarded from client to upstream (besides hop-by-hop ones).
fn drop_request_header(name: &[u8]) -> bool {
    const DROP: &[&[u8]] = &[
        b"host",
        b"authorization",
        b"x-api-key",
        b"api-key",
        b"content-length",
        b"content-type",
        b"accept-encoding",
        b"expect",
        b"x-request-id",
        b"cookie",
    ];
    crate::h1::is_hop_by_hop(name)
        || DROP.iter().any(|d| d.eq_ignore_ascii_case(name))
        || (name.len() > 9 && name[..9].eq_ignore_ascii_case(b"x-router-"))
}

fn build_request(
    out: &mut Vec<u8>,
    ch: &Channel,
    req: &Request<'_>,
    f: &Features,
    model: &str,
    request_id: &[u8],
) {
    out.clear();
    out.extend_from_slice(&ch.request_head);
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
    for h in &req.head.headers {
        let name = &req.buf[h.name.clone()];
        if drop_request_header(name)
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
    let mut quoted = Vec::with_capacity(model.len() + 2);
    json::write_str(&mut quoted, model);
    let removed: usize = f.model_spans.iter().map(|r| r.len()).sum();
    let len = req.body.len() - removed + quoted.len() * f.model_spans.len();
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    let mut at = 0;
    for span in &f.model_spans {
        out.extend_from_slice(&req.body[at..span.start]);
        out.extend_from_slice(&quoted);
        at = span.end;
    }
    out.extend_from_slice(&req.body[at..]);
}

/// Sends the request and reads the response head, retrying once on a fresh connection when a
/// reused one turns out dead.
async fn attempt_once(
    worker: &Worker,
    ch: &Channel,
    outgoing: &mut Vec<u8>,
    started: Instant,
) -> Result<(Conn, ResponseHead), Failure> {
    let ep = &ch.endpoint;
    let t = ch.timeouts;
    let mut conn = match worker.pool.take_idle(ep, started) {
        Some(c) => c,
        None => worker
            .pool
            .connect(ep, t.connect)
            .await
            .map_err(Failure::Connect)?,
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
                    return Err(Failure::Broken(e));
                }
            }
            Err(_) => {
                // The request buffer was inside the cancelled future; a timeout moves on to
                // another channel, whose request is built afresh.
                *outgoing = Vec::new();
                return Err(Failure::Timeout("first byte"));
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
            .map_err(Failure::Connect)?;
    }
}

async fn send_and_read_head(
    conn: &mut Conn,
    data: Vec<u8>,
) -> (Result<ResponseHead, String>, Vec<u8>) {
    let (w, data) = conn.write_all(data).await;
    if let Err(e) = w {
        return (Err(format!("write failed: {e}")), data);
    }
    loop {
        match ResponseHead::parse(&conn.buf, MAX_RESPONSE_HEAD, false) {
            Ok(Some(h)) if h.status == 101 => {
                return (Err("unexpected protocol switch (101)".to_string()), data);
            }
            Ok(Some(h)) if (100..200).contains(&h.status) => {
                // Interim response (e.g. 100 Continue): skip it.
                conn.buf.drain(..h.len);
                continue;
            }
            Ok(Some(h)) => return (Ok(h), data),
            Ok(None) => {}
            Err(e) => return (Err(format!("bad response head: {e:?}")), data),
        }
        match conn.read_more().await {
            Ok(0) => {
                return (Err("connection closed before a response".to_string()), data);
            }
            Ok(_) => {}
            Err(e) => return (Err(format!("read failed: {e}")), data),
        }
    }
}

/// Reads a failed attempt's body (bounded) so it can be returned if no later attempt answers;
/// pools the connection when it was read cleanly.
async fn read_kept(worker: &Worker, ch: &Channel, mut conn: Conn, head: &ResponseHead) -> Kept {
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = relay::forwarded(&conn.buf, head)
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    if let Some(ct) = head.header(&conn.buf, b"content-type") {
        headers.push((b"content-type".to_vec(), ct.to_vec()));
    }
    let status = head.status;
    let mut body = Vec::new();
    let deadline = Instant::now() + ch.timeouts.idle.min(Duration::from_secs(10));
    let exact = relay::read_body(&mut conn, head, &mut body, MAX_ERROR_BODY, deadline).await;
    if matches!(exact, Ok(true)) && head.keep_alive {
        worker.pool.put(&ch.endpoint, conn, Instant::now());
    }
    Kept {
        status,
        headers,
        body,
    }
}

/// Every attempt failed: the last upstream 4xx as-is, else 502 (504 after a timeout).
async fn give_up(
    snap: &Snapshot,
    model: &str,
    failures: Vec<(usize, Failure)>,
    out: &mut Responder<'_>,
) {
    let summary: Vec<String> = failures
        .iter()
        .map(|(c, f)| format!("{}: {}", snap.channels[*c].id, f.describe()))
        .collect();
    tracing::warn!(model, attempts = failures.len(), failures = %summary.join("; "), "all attempts failed");
    let Some((_, last)) = failures.into_iter().last() else {
        let e = Error::new(502, Kind::Server, "upstream_error", "No attempt was made.");
        return out.send_error(&e).await;
    };
    match last {
        // A rate limit or an unknown model is the client's business: relayed as it came.
        Failure::Status(k) if matches!(k.status, 404 | 429) => {
            out.begin(k.status);
            for (n, v) in &k.headers {
                if !n.eq_ignore_ascii_case(b"content-type") {
                    out.header(n, v);
                }
            }
            let ct = k
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
                .map_or(&b"application/json"[..], |(_, v)| v.as_slice());
            out.body(ct, &k.body).await
        }
        last => {
            // 401/402/403 describe the *gateway's* key, not the client's: relaying them would
            // tell the client its own credentials are wrong and leak the provider's text about
            // ours. They become a 502 naming the channel.
            let (status, code, hint) = match &last {
                Failure::Timeout(_) | Failure::Connect(ConnectError::Timeout) => {
                    (504, "upstream_timeout", "")
                }
                Failure::Status(k) if matches!(k.status, 401 | 403) => (
                    502,
                    "upstream_auth_failed",
                    " The provider rejected the channel's API key; check its api_key.",
                ),
                Failure::Status(k) if k.status == 402 => (
                    502,
                    "upstream_quota_exhausted",
                    " The provider reports the channel's credit or quota is exhausted.",
                ),
                _ => (502, "upstream_error", ""),
            };
            let e = Error::new(
                status,
                Kind::Server,
                code,
                format!(
                    "Every upstream attempt for `{}` failed ({}).{hint}",
                    crate::error::truncate(model, 200),
                    summary.join("; ")
                ),
            );
            out.send_error(&e).await
        }
    }
}
