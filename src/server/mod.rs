//! Downstream HTTP/1.1 connections: read each request head and body within the limits and
//! deadlines of `[server]`, hand the request to `api`, and keep the connection alive
//! (pipelined requests are answered in order, one at a time).
//!
//! Invariants: every limit violation is answered with the right status and an OpenAI-shaped
//! body, then the connection is closed gracefully (write side shut, unread input drained for a
//! moment so the client sees the answer instead of a reset). Nothing here panics on input.
//! A connection is read by exactly one task; while a response streams, `ClientInput` watches for
//! the client going away with a cancel-safe read so no pipelined byte is lost.
//! Not here: endpoint semantics (`api`), upstream I/O (`proxy`, `upstream`).

pub(crate) mod accept;
pub(crate) mod response;
pub(crate) mod stream;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::error::Error;
use crate::h1::head::{Body, HeadError, Method, RequestHead};
use crate::h1::{READ_RESERVE, chunked, read_into};
use crate::snapshot::Snapshot;
use crate::worker::{SnapshotRef, Worker};
pub(crate) use response::{ClientInput, Exchange, Responder};
pub(crate) use stream::{ClientReader, ClientStream, ClientWriter};

/// A request as `api` sees it: the head (offsets into `buf`) and the whole body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// Parsed head.
    pub head: &'a RequestHead,
    /// The connection buffer the head's ranges point into.
    pub buf: &'a [u8],
    /// The body (de-chunked).
    pub body: &'a [u8],
    /// When the whole request (head and body) had been received.
    pub received: Instant,
    /// The client key that authenticated it (in the snapshot the request is served with), set
    /// by `api` once it checked the credentials; `None` on an open gateway.
    pub client: Option<&'a crate::auth::Client>,
}

impl<'a> Request<'a> {
    /// A header value by name.
    pub(crate) fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.head.header(self.buf, name)
    }
    /// The path (no query).
    pub(crate) fn path(&self) -> &[u8] {
        self.head.path(self.buf)
    }
    /// The catalog entries the request's key may reach (`None`: every one).
    pub(crate) fn allowed(&self) -> Option<&'a [u64]> {
        self.client.and_then(|c| c.allowed.as_deref())
    }
}

/// What a request head alone decided: the route (the handler's own type), the client key
/// that may use it, and the family errors are rendered in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted<'s, R> {
    /// The handler's route.
    pub(crate) route: R,
    /// The authenticated client key (`None`: open gateway, or a route without auth).
    pub(crate) client: Option<&'s crate::auth::Client>,
    /// The wire family of the route's errors.
    pub(crate) family: crate::presets::Family,
}

/// A request refused on its head, before any body byte was read or `100 Continue` sent.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The error to answer.
    pub(crate) error: Error,
    /// The error shape (the route's family).
    pub(crate) family: crate::presets::Family,
    /// An extra header (`www-authenticate`, `allow`), or an empty name for none.
    pub(crate) headers: [(&'static [u8], &'static [u8]); 1],
}

/// What answers the requests this server reads (the gateway's API, `api::Gateway`). The
/// server owns connections, framing, limits and deadlines; the handler owns meaning.
pub(crate) trait Handler {
    /// What [`Handler::judge`] tells [`Handler::handle`] about a request.
    type Route: Copy;

    /// Judges a request on its head alone — route, method, credentials — before the server
    /// reads a byte of its body (auth before body).
    fn judge<'s>(
        &self,
        snap: &'s Snapshot,
        head: &RequestHead,
        buf: &[u8],
    ) -> Result<Admitted<'s, Self::Route>, Refusal>;

    /// Answers an admitted request (head and whole body in hand) through `ex`.
    async fn handle(
        &self,
        worker: &Rc<Worker>,
        snap: &SnapshotRef,
        req: &Request<'_>,
        route: Self::Route,
        ex: &mut Exchange<'_>,
    );
}

/// How long and how much a closing connection drains unread input.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

struct Buffers {
    rbuf: Vec<u8>,
    body: Vec<u8>,
    wbuf: Vec<u8>,
    spill: Vec<u8>,
}

enum Next {
    KeepAlive,
    Close,
    /// Close after draining unread input (an error was answered mid-request).
    Linger,
}

/// Serves one client connection until it closes, errs, times out or the worker drains.
pub(crate) async fn serve<H: Handler>(worker: &Rc<Worker>, stream: ClientStream, handler: &H) {
    let (mut reader, mut writer) = stream.split();
    let mut b = Buffers {
        rbuf: Vec::with_capacity(READ_RESERVE),
        body: Vec::new(),
        wbuf: Vec::with_capacity(READ_RESERVE),
        spill: Vec::new(),
    };
    loop {
        match serve_one(worker, &mut reader, &mut writer, &mut b, handler).await {
            Next::KeepAlive if !worker.draining.get() => continue,
            Next::KeepAlive | Next::Close => return,
            Next::Linger => {
                linger_close(&mut reader, &mut writer).await;
                return;
            }
        }
    }
}

async fn serve_one<H: Handler>(
    worker: &Rc<Worker>,
    reader: &mut ClientReader,
    writer: &mut ClientWriter,
    b: &mut Buffers,
    handler: &H,
) -> Next {
    let snap = worker.snapshot();
    let limits = &snap.server;

    // 1. The head: idle wait (silent close) until a first byte, then the header deadline.
    let mut head_deadline = (!b.rbuf.is_empty()).then(|| Instant::now() + limits.header_timeout);
    let head = loop {
        match h2_preface(&b.rbuf) {
            Some(true) => {
                // An HTTP/2 client with prior knowledge: tell it, in its own protocol, to
                // use HTTP/1.1 (curl then says so, instead of "empty reply").
                tracing::info!(
                    worker = worker.id,
                    "HTTP/2 connection preface refused with GOAWAY HTTP_1_1_REQUIRED"
                );
                let frames = h2_goaway().to_vec();
                let _ = monoio::time::timeout(limits.idle_timeout, writer.write_all(frames)).await;
                return Next::Close;
            }
            Some(false) => {} // a prefix of it: read on
            None if !b.rbuf.is_empty() => {
                match RequestHead::parse(&b.rbuf, limits.max_headers, limits.max_header_bytes) {
                    Ok(Some(h)) => break h,
                    Ok(None) => {}
                    Err(e) => {
                        let err = head_error(&e);
                        let mut ex = early_exchange(worker, writer, reader, b, 1);
                        ex.out.send_error(&err).await;
                        return Next::Linger;
                    }
                }
            }
            None => {}
        }
        let timeout = match head_deadline {
            None => limits.idle_timeout,
            Some(d) => d.saturating_duration_since(Instant::now()),
        };
        match monoio::time::timeout(timeout, read_into(reader, &mut b.rbuf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Next::Close,
            Ok(Ok(_)) => {
                if head_deadline.is_none() {
                    head_deadline = Some(Instant::now() + limits.header_timeout);
                }
            }
            Err(_) if head_deadline.is_none() => return Next::Close,
            Err(_) => {
                let err = Error::new(
                    408,
                    crate::error::Kind::InvalidRequest,
                    "request_timeout",
                    format!(
                        "The request head did not arrive within {:?}.",
                        limits.header_timeout
                    ),
                );
                let mut ex = early_exchange(worker, writer, reader, b, 1);
                ex.out.send_error(&err).await;
                return Next::Close;
            }
        }
    };

    // 2. Judged on the head, before a body byte is read or `100 Continue` sent: framing and
    // size first (above, and here for a declared length), then the route and the client key.
    if let Body::Length(n) = head.body
        && n > limits.max_body as u64
    {
        let err = too_large(limits.max_body);
        let mut ex = early_exchange(worker, writer, reader, b, head.minor_version);
        ex.out.send_error(&err).await;
        return Next::Linger;
    }
    let body_pending = match head.body {
        Body::Length(n) => n > 0,
        Body::Chunked => true,
        Body::None | Body::Close => false,
    };
    let admitted = match handler.judge(&snap, &head, &b.rbuf) {
        Ok(a) => a,
        Err(refusal) => {
            let extra: &[(&[u8], &[u8])] = if refusal.headers[0].0.is_empty() {
                &[]
            } else {
                &refusal.headers
            };
            let early = Early {
                head: &head,
                body_pending,
                family: refusal.family,
            };
            return early
                .refuse(worker, writer, reader, b, &refusal.error, extra)
                .await;
        }
    };
    // The memory bound: a request body counts twice (as received, and as forwarded upstream).
    let need = match head.body {
        Body::Length(n) => (n as usize).saturating_mul(2),
        _ => 0,
    };
    if !worker.has_room(need, limits.max_buffered) {
        let s = &worker.stats.overloaded;
        s.set(s.get() + 1);
        let err = Error::overloaded(
            "This gateway worker holds server.max_buffered bytes of request and response \
             bodies; retry shortly.",
        );
        let early = Early {
            head: &head,
            body_pending,
            family: admitted.family,
        };
        return early
            .refuse(worker, writer, reader, b, &err, &[(b"retry-after", b"1")])
            .await;
    }
    let mut held = worker.hold(need);

    // 3. The body, within max_body and the body deadline.
    let body_deadline = Instant::now() + limits.body_timeout;
    let (body_range, consumed, chunked_body) = match head.body {
        Body::None | Body::Close => (head.len..head.len, head.len, false),
        Body::Length(n) => {
            let end = head.len + n as usize;
            if head.expect_continue
                && b.rbuf.len() < end
                && !continue_100(writer, limits.idle_timeout).await
            {
                return Next::Close;
            }
            // One allocation of the body's size (plus the slack `read_into` keeps, so it never
            // grows the buffer itself): growing by doubling would hold up to twice the body.
            b.rbuf
                .reserve_exact(end.saturating_sub(b.rbuf.len()) + READ_RESERVE);
            while b.rbuf.len() < end {
                let left = body_deadline.saturating_duration_since(Instant::now());
                match monoio::time::timeout(left, read_into(reader, &mut b.rbuf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Next::Close,
                    Ok(Ok(_)) => {}
                    Err(_) => {
                        let mut ex = early_exchange(worker, writer, reader, b, head.minor_version);
                        ex.out.send_error(&body_timeout(limits.body_timeout)).await;
                        return Next::Close;
                    }
                }
            }
            (head.len..end, end, false)
        }
        Body::Chunked => {
            if head.expect_continue
                && b.rbuf.len() == head.len
                && !continue_100(writer, limits.idle_timeout).await
            {
                return Next::Close;
            }
            let mut dec = chunked::Decoder::new();
            b.body.clear();
            let mut pos = head.len;
            loop {
                match dec.decode(&b.rbuf[pos..], &mut b.body) {
                    Ok(n) => pos += n,
                    Err(e) => {
                        let err = Error::bad_request(
                            "invalid_chunked_body",
                            format!("Malformed chunked request body: {}.", e.0),
                        );
                        let mut ex = early_exchange(worker, writer, reader, b, head.minor_version);
                        ex.out.send_error(&err).await;
                        return Next::Close;
                    }
                }
                held.grow_to(b.body.len().saturating_mul(2));
                if b.body.len() > limits.max_body {
                    let err = too_large(limits.max_body);
                    let mut ex = early_exchange(worker, writer, reader, b, head.minor_version);
                    ex.out.send_error(&err).await;
                    return Next::Linger;
                }
                if dec.is_done() {
                    break;
                }
                // Keep the buffer small: drop the raw chunk bytes already decoded.
                b.rbuf.drain(head.len..pos);
                pos = head.len;
                let left = body_deadline.saturating_duration_since(Instant::now());
                match monoio::time::timeout(left, read_into(reader, &mut b.rbuf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Next::Close,
                    Ok(Ok(_)) => {}
                    Err(_) => {
                        let mut ex = early_exchange(worker, writer, reader, b, head.minor_version);
                        ex.out.send_error(&body_timeout(limits.body_timeout)).await;
                        return Next::Close;
                    }
                }
            }
            (0..0, pos, true)
        }
    };

    // 4. Dispatch, on the snapshot current now (the one above may have aged while the body
    // arrived); a key judged on an older one is judged again (a reload may have revoked it).
    worker.refresh_if_limited();
    let head_snap = &snap;
    let snap = worker.snapshot();
    let limits = &snap.server;
    let client = if Arc::ptr_eq(head_snap, &snap) {
        admitted.client
    } else {
        match handler.judge(&snap, &head, &b.rbuf) {
            Ok(a) => a.client,
            Err(refusal) => {
                let mut ex = early_exchange(worker, writer, reader, b, head.minor_version);
                ex.out.errors_as = refusal.family;
                ex.out.send_error(&refusal.error).await;
                return Next::Close;
            }
        }
    };
    let in_flight = InFlight::enter(worker);
    let keep_alive = head.keep_alive && !worker.draining.get();
    let (keep, client_closed) = {
        let body: &[u8] = if chunked_body {
            &b.body
        } else {
            &b.rbuf[body_range]
        };
        let req = Request {
            head: &head,
            buf: &b.rbuf,
            body,
            received: Instant::now(),
            client,
        };
        let request_id = response::choose_request_id(req.header(b"x-request-id"), worker);
        let cors = response::cors_origin(&snap.server.cors, req.header(b"origin"));
        let mut ex = Exchange {
            out: Responder::new(
                writer,
                &mut b.wbuf,
                head.minor_version,
                keep_alive,
                head.method == Method::Head,
                request_id,
                cors,
                worker.date(),
                limits.idle_timeout,
            ),
            input: ClientInput::new(reader, &mut b.spill),
        };
        handler
            .handle(worker, &snap, &req, admitted.route, &mut ex)
            .await;
        (ex.out.keep_alive && !ex.out.failed, ex.input.closed)
    };
    drop(in_flight);
    drop(held);

    b.rbuf.drain(..consumed.min(b.rbuf.len()));
    if !b.spill.is_empty() {
        b.rbuf.extend_from_slice(&b.spill);
        b.spill.clear();
    }
    if b.rbuf.capacity() > 64 * 1024 && b.rbuf.len() < READ_RESERVE {
        b.rbuf.shrink_to(READ_RESERVE);
    }
    if b.body.capacity() > 64 * 1024 {
        b.body = Vec::new();
    }
    if keep && !client_closed {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// A request answered on its head alone (refused before its body was read).
struct Early<'h> {
    head: &'h RequestHead,
    body_pending: bool,
    family: crate::providers::Family,
}

impl Early<'_> {
    /// Answers `err` (in the route's family, with `headers`); the connection stays open only
    /// when no body is pending — an unread body is never taken for the next request.
    async fn refuse(
        self,
        worker: &Worker,
        writer: &mut ClientWriter,
        reader: &mut ClientReader,
        b: &mut Buffers,
        err: &Error,
        headers: &[(&[u8], &[u8])],
    ) -> Next {
        let mut ex = early_exchange(worker, writer, reader, b, self.head.minor_version);
        ex.out.keep_alive = self.head.keep_alive && !self.body_pending && !worker.draining.get();
        ex.out.errors_as = self.family;
        ex.out.send_error_with(err, headers).await;
        let keep = ex.out.keep_alive && !ex.out.failed;
        if self.body_pending {
            return Next::Linger;
        }
        b.rbuf.drain(..self.head.len);
        if keep { Next::KeepAlive } else { Next::Close }
    }
}

/// Counts a request in `in_flight` for as long as it lives, unwinding included (shutdown waits
/// for this count to reach zero).
struct InFlight<'w>(&'w Worker);

impl<'w> InFlight<'w> {
    fn enter(worker: &'w Worker) -> Self {
        let s = &worker.stats;
        s.in_flight.set(s.in_flight.get() + 1);
        s.requests.set(s.requests.get() + 1);
        InFlight(worker)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let s = &self.0.stats;
        s.in_flight.set(s.in_flight.get() - 1);
    }
}

fn early_exchange<'c>(
    worker: &Worker,
    writer: &'c mut ClientWriter,
    reader: &'c mut ClientReader,
    b: &'c mut Buffers,
    minor_version: u8,
) -> Exchange<'c> {
    let snap = worker.snapshot();
    Exchange {
        out: Responder::new(
            writer,
            &mut b.wbuf,
            minor_version,
            false,
            false,
            response::choose_request_id(None, worker),
            None,
            worker.date(),
            snap.server.idle_timeout,
        ),
        input: ClientInput::new(reader, &mut b.spill),
    }
}

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `buf` starts with the HTTP/2 preface: `Some(true)` when enough of it arrived to be
/// sure (its request line), `Some(false)` for a shorter prefix of it, `None` otherwise.
fn h2_preface(buf: &[u8]) -> Option<bool> {
    const SURE: usize = 16; // `PRI * HTTP/2.0\r\n`: no HTTP/1 request line looks like it
    let n = buf.len().min(H2_PREFACE.len());
    (n > 0 && buf[..n] == H2_PREFACE[..n]).then_some(n >= SURE)
}

/// An empty SETTINGS frame (the server's preface) and a GOAWAY with `HTTP_1_1_REQUIRED`.
fn h2_goaway() -> [u8; 26] {
    let mut f = [0u8; 26];
    // SETTINGS: length 0, type 0x4, flags 0, stream 0.
    f[3] = 0x4;
    // GOAWAY: length 8, type 0x7, flags 0, stream 0; last stream id 0; error code 0xd.
    f[9..12].copy_from_slice(&[0, 0, 8]);
    f[12] = 0x7;
    f[25] = 0xd;
    f
}

fn head_error(e: &HeadError) -> Error {
    use crate::error::Kind;
    match e {
        HeadError::TooLarge => Error::new(
            431,
            Kind::InvalidRequest,
            "request_header_too_large",
            "The request head is larger than server.max_header_bytes.",
        ),
        HeadError::TooManyHeaders => Error::new(
            431,
            Kind::InvalidRequest,
            "too_many_headers",
            "The request has more headers than server.max_headers.",
        ),
        HeadError::Malformed(m) => {
            Error::bad_request("malformed_request", format!("Malformed HTTP request: {m}."))
        }
        HeadError::Framing(m) => {
            Error::bad_request("bad_framing", format!("Rejected request framing: {m}."))
        }
        HeadError::Expectation => Error::new(
            417,
            Kind::InvalidRequest,
            "expectation_failed",
            "Only `Expect: 100-continue` is supported.",
        ),
    }
}

fn too_large(max: usize) -> Error {
    Error::new(
        413,
        crate::error::Kind::InvalidRequest,
        "request_too_large",
        format!("The request body is larger than server.max_body ({max} bytes)."),
    )
}

fn body_timeout(d: Duration) -> Error {
    Error::new(
        408,
        crate::error::Kind::InvalidRequest,
        "request_timeout",
        format!("The request body did not arrive within {d:?}."),
    )
}

async fn continue_100(writer: &mut ClientWriter, timeout: Duration) -> bool {
    let write = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n".as_slice());
    matches!(monoio::time::timeout(timeout, write).await, Ok((Ok(_), _)))
}

async fn linger_close(reader: &mut ClientReader, writer: &mut ClientWriter) {
    use monoio::io::AsyncWriteRent;
    let _ = writer.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    let mut scratch = Vec::with_capacity(16 * 1024);
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        scratch.clear();
        match monoio::time::timeout(left, read_into(reader, &mut scratch)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

/// Answers a connection over the per-worker cap with a 503 and closes it.
pub(crate) async fn reject_overloaded(stream: TcpStream, worker: Rc<Worker>) {
    let (mut reader, mut writer) = ClientStream::Plain(stream).split();
    let mut wbuf = Vec::new();
    let mut spill = Vec::new();
    let mut ex = Exchange {
        out: Responder::new(
            &mut writer,
            &mut wbuf,
            1,
            false,
            false,
            response::choose_request_id(None, &worker),
            None,
            worker.date(),
            Duration::from_secs(1),
        ),
        input: ClientInput::new(&mut reader, &mut spill),
    };
    let err = Error::overloaded("This gateway worker is at server.max_connections; retry shortly.");
    ex.out.send_error(&err).await;
}
