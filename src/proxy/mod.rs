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
use crate::server::{Exchange, Request};
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
    let mut plan = Vec::with_capacity(4);
    if let Err(e) = routing::plan(snap, &features.model, worker.next_rotation(), &mut plan) {
        return ex.out.send_error(&e).await;
    }
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
            ex.out.request_id.as_bytes(),
        );
        let started = Instant::now();
        let info = Info {
            channel: ch,
            model: attempt.model,
            requested: &features.model,
            attempts: n + 1,
            started,
        };
        match attempt_once(worker, ch, &mut outgoing, started).await {
            Err(f) => {
                tracing::debug!(channel = %ch.id, failure = %f.describe(), "attempt failed");
                failures.push((attempt.channel, f));
            }
            Ok((conn, head)) if fails_over(head.status) => {
                let kept = read_kept(worker, ch, conn, &head).await;
                tracing::debug!(channel = %ch.id, status = head.status, "upstream status fails over");
                failures.push((attempt.channel, Failure::Status(kept)));
            }
            Ok((conn, head)) => {
                return relay::respond(worker, ch, conn, head, &info, ex).await;
            }
        }
    }
    give_up(snap, &features.model, failures, ex).await;
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
    let connection_tokens = req.header(b"connection").unwrap_or(b"");
    for h in &req.head.headers {
        let name = &req.buf[h.name.clone()];
        if drop_request_header(name)
            || crate::h1::has_token(connection_tokens, name)
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
    loop {
        let budget = t.first_byte.min(t.total.saturating_sub(started.elapsed()));
        let data = std::mem::take(outgoing);
        let r = monoio::time::timeout(budget, send_and_read_head(&mut conn, data)).await;
        match r {
            Ok((Ok(head), data)) => {
                *outgoing = data;
                return Ok((conn, head));
            }
            Ok((Err(e), data)) => {
                *outgoing = data;
                if conn.reused && conn.buf.is_empty() {
                    // A pooled connection the server had closed: one fresh retry.
                    conn = worker
                        .pool
                        .connect(ep, t.connect)
                        .await
                        .map_err(Failure::Connect)?;
                    continue;
                }
                return Err(Failure::Broken(e));
            }
            Err(_) => {
                // The buffer was inside the cancelled future; rebuild is the caller's job only
                // if it tries again, and a timeout moves to another channel anyway.
                *outgoing = Vec::new();
                return Err(Failure::Timeout("first byte"));
            }
        }
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
    let headers = head
        .headers
        .iter()
        .filter(|h| relay::forward_response_header(&conn.buf[h.name.clone()]))
        .map(|h| {
            (
                conn.buf[h.name.clone()].to_vec(),
                conn.buf[h.value.clone()].to_vec(),
            )
        })
        .collect();
    let status = head.status;
    let mut body = Vec::new();
    let deadline = Instant::now() + ch.timeouts.idle.min(Duration::from_secs(10));
    let clean = relay::read_body(&mut conn, head, &mut body, MAX_ERROR_BODY, deadline).await;
    if clean.is_ok() && head.keep_alive {
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
    ex: &mut Exchange<'_>,
) {
    let summary: Vec<String> = failures
        .iter()
        .map(|(c, f)| format!("{}: {}", snap.channels[*c].id, f.describe()))
        .collect();
    tracing::warn!(model, attempts = failures.len(), failures = %summary.join("; "), "all attempts failed");
    let Some((_, last)) = failures.into_iter().last() else {
        return ex
            .out
            .send_error(&Error::new(
                502,
                Kind::Server,
                "upstream_error",
                "No attempt was made.",
            ))
            .await;
    };
    match last {
        Failure::Status(k) if k.status < 500 => {
            ex.out.begin(k.status);
            for (n, v) in &k.headers {
                if !n.eq_ignore_ascii_case(b"content-type") {
                    ex.out.header(n, v);
                }
            }
            let ct = k
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
                .map_or(&b"application/json"[..], |(_, v)| v.as_slice());
            ex.out.body(ct, &k.body).await
        }
        last => {
            let (status, code) = match last {
                Failure::Timeout(_) | Failure::Connect(ConnectError::Timeout) => {
                    (504, "upstream_timeout")
                }
                _ => (502, "upstream_error"),
            };
            let e = Error::new(
                status,
                Kind::Server,
                code,
                format!(
                    "Every upstream attempt for `{}` failed ({}).",
                    crate::error::truncate(model, 200),
                    summary.join("; ")
                ),
            );
            ex.out.send_error(&e).await
        }
    }
}
