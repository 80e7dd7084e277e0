//! The admin API, on its own listener (`[admin] listen`) inside the control thread's event
//! loop: see and steer channels, cooldowns, discovery, snapshots and reloads, `GET /metrics`,
//! and the operators' status page (`GET /`, [`status`]). Formats are documented in the README
//! ("Admin API", "Status page"). This module owns the listener, the connection slots, reading
//! a request (on the shared `h1` reader), its credentials, and writing the answer (one
//! `h1::write_response`); [`routes`] maps requests to [`views`], [`usage`], the
//! [`prometheus`] document, the changes and the [`status`] page.
//!
//! Invariants: with `[admin] token` set, every request must carry `Authorization: Bearer
//! <token>` (the scheme in any case), compared in constant time (`secret::same`), or the
//! cookie of a browser [`session`] opened with that token — plus, for anything but `GET`, the
//! session's CSRF token in `x-csrf-token` (403 without it) — all checked on the head, before
//! any body byte is read. Only the sign-in form (`/login`, `/logout`) and the page's static
//! assets answer without credentials. Without a token the config only allows a loopback
//! address, and then every request is admitted as before (the page too); a non-`GET` whose
//! `Origin` names another host is refused (403) whatever the credentials, so a web page the
//! operator visits cannot drive the API through the browser. No response ever contains an API key: channels show an 8-hex SHA-256 fingerprint.
//! Overrides are persisted before the answer is sent. One request per connection, bounded in
//! size (64 KiB body) and time (the head within [`HEAD_TIMEOUT`], the body within 10 s), at
//! most [`MAX_CONNECTIONS`] at once. Idle or slow peers cannot lock operators out: when every
//! slot is taken, the oldest connection that has not yet authenticated is closed to make room
//! (an authenticated one is never closed for a newcomer). Never panics on input.
//! Not here: the worker-facing API (`server`, `api`), the documents' JSON shapes (`views`,
//! `usage`: serde_json; the hot path keeps the hand-written `json` writer).

#[cfg(feature = "cluster")]
mod fleet;
mod prometheus;
mod routes;
mod session;
mod status;
mod usage;
mod views;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use serde::Serialize;

use super::{Ctl, State};
use crate::error::{Error, Kind};
use crate::h1::ReadError;
use crate::h1::head::{Body, RequestHead};

/// Concurrent admin connections; when all are taken, the oldest unauthenticated one makes room.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// A request head (and so its credentials) must arrive this soon after the connection opened.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One open admin connection, as the accept loop sees it.
#[derive(Default)]
struct Slot {
    /// Its credentials were checked and accepted.
    authed: Cell<bool>,
    /// The accept loop closed it to make room.
    evicted: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("authed", &self.authed.get())
            .field("evicted", &self.evicted.get())
            .finish()
    }
}

impl Slot {
    fn evict(&self) {
        self.evicted.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// Completes when the slot is evicted.
struct Evicted<'a>(&'a Slot);

impl Future for Evicted<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.evicted.get() {
            return Poll::Ready(());
        }
        self.0.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
struct Slots(RefCell<Vec<Rc<Slot>>>);

impl Slots {
    /// A slot for a new connection: when all are taken, the oldest connection that has not
    /// authenticated is evicted; `None` when every one has (authorised work is never cut).
    fn admit(&self) -> Option<Rc<Slot>> {
        let mut open = self.0.borrow_mut();
        if open.len() >= MAX_CONNECTIONS {
            let oldest = open.iter().position(|s| !s.authed.get())?;
            open.remove(oldest).evict();
        }
        let slot = Rc::new(Slot::default());
        open.push(slot.clone());
        Some(slot)
    }

    fn release(&self, slot: &Rc<Slot>) {
        self.0.borrow_mut().retain(|s| !Rc::ptr_eq(s, slot));
    }
}

/// Accepts admin connections until the thread stops.
pub(crate) async fn serve(ctl: Rc<Ctl>, listener: TcpListener) {
    let slots = Rc::new(Slots::default());
    let sessions = Rc::new(RefCell::new(session::Sessions::default()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            monoio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(slot) = slots.admit() else {
            drop(stream);
            continue;
        };
        let (ctl, slots, sessions) = (ctl.clone(), slots.clone(), sessions.clone());
        monoio::spawn(async move {
            monoio::select! {
                _ = connection(&ctl, stream, &slot, &sessions) => {}
                _ = Evicted(&slot) => {}
            }
            slots.release(&slot);
        });
    }
}

/// A parsed admin request.
struct Req {
    method: String,
    path: String,
    /// The query string (after `?`), raw.
    query: String,
    authorization: Option<Vec<u8>>,
    /// The `Cookie` header (a status-page session).
    cookie: Option<Vec<u8>>,
    /// The `x-csrf-token` header.
    csrf: Option<Vec<u8>>,
    /// The `Origin` and `Host` headers (cross-origin writes are refused).
    origin: Option<Vec<u8>>,
    host: Option<Vec<u8>>,
    body: Vec<u8>,
}

/// How a request was let in.
#[derive(Debug, Clone)]
enum Access {
    /// The sign-in form and the page's assets: no credentials needed or given.
    Public,
    /// No `[admin] token`: the listener is on loopback (the config's rule) and admits all.
    Open,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A status-page session cookie; its CSRF token (checked already on writes).
    Session { csrf: String },
}

/// Paths that answer without credentials: the sign-in form, signing out, the page's assets.
fn public(method: &str, path: &str) -> bool {
    matches!(
        (method, path),
        ("GET" | "POST", "/login") | ("POST", "/logout")
    ) || (method == "GET" && path.starts_with("/static/"))
}

/// An answer: status, body, its content type, and whether it carries a bearer challenge.
struct Answer {
    status: u16,
    body: Vec<u8>,
    challenge: bool,
    content_type: &'static [u8],
    /// More headers (`set-cookie`, `location`, the page's security headers).
    extra: Vec<(&'static [u8], Vec<u8>)>,
}

/// What an HTML answer declares: scripts and styles from this listener only, no framing, no
/// referrer to other sites (`same-origin`, not `no-referrer`: with that, browsers send
/// `Origin: null` on the sign-in form's POST, which the cross-origin check refuses).
const HTML_HEADERS: [(&[u8], &[u8]); 4] = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
          connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
];

impl Answer {
    /// 200 with a body of `content_type`.
    fn ok(content_type: &'static [u8], body: Vec<u8>) -> Answer {
        Answer {
            status: 200,
            body,
            challenge: false,
            content_type,
            extra: Vec::new(),
        }
    }
    /// 200 with a JSON document ([`serialize`]).
    fn json(body: Vec<u8>) -> Answer {
        Answer::ok(b"application/json", body)
    }
    /// 200 with the Prometheus text document.
    fn metrics(text: String) -> Answer {
        Answer::ok(
            b"text/plain; version=0.0.4; charset=utf-8",
            text.into_bytes(),
        )
    }
    /// An HTML page with its security headers.
    fn html(status: u16, page: String) -> Answer {
        let mut a = Answer::ok(b"text/html; charset=utf-8", page.into_bytes());
        a.status = status;
        a.extra = HTML_HEADERS.iter().map(|(k, v)| (*k, v.to_vec())).collect();
        a
    }
    /// 303 to `location` (a path on this listener).
    fn redirect(location: &str) -> Answer {
        let mut a = Answer::ok(b"text/plain; charset=utf-8", Vec::new());
        a.status = 303;
        a.extra.push((b"location", location.as_bytes().to_vec()));
        a
    }
    /// An OpenAI-shaped error; a 401 challenges for a bearer token.
    fn error(e: Error) -> Answer {
        Answer {
            status: e.status,
            body: e.body(),
            challenge: e.status == 401,
            content_type: b"application/json",
            extra: Vec::new(),
        }
    }
}

/// An admin document as JSON (serde_json: the admin API is not the hot path).
fn serialize(doc: &impl Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(doc).map_err(|e| Error::internal(format!("cannot write the answer: {e}")))
}

fn not_found(what: &str) -> Error {
    Error::new(404, Kind::InvalidRequest, "not_found", what.to_string())
}

/// One request: the head within [`HEAD_TIMEOUT`], its credentials checked before the body is
/// read, the body and the answer each within [`IO_TIMEOUT`]; the handling is not bounded (a
/// reload is bounded on its own, and must not be cut short by a slow client).
async fn connection(
    ctl: &Rc<Ctl>,
    mut stream: TcpStream,
    slot: &Slot,
    sessions: &RefCell<session::Sessions>,
) {
    let mut buf = Vec::with_capacity(crate::h1::READ_RESERVE);
    let answer = match monoio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream, &mut buf)).await {
        Ok(Ok(head)) => match verdict(ctl, &head.req, sessions) {
            // A browser that is not signed in is sent to the sign-in form.
            Err(e) if e.status == 401 && head.req.method == "GET" && head.req.path == "/" => {
                Answer::redirect("/login")
            }
            Err(e) => Answer::error(e),
            Ok(access) => {
                if !matches!(access, Access::Public) {
                    slot.authed.set(true);
                }
                let body = read_body(&mut stream, &mut buf, head);
                match monoio::time::timeout(IO_TIMEOUT, body).await {
                    Ok(Ok(req)) => routes::handle(ctl, req, access, sessions).await,
                    Ok(Err(Some(e))) => Answer::error(e),
                    Ok(Err(None)) | Err(_) => return,
                }
            }
        },
        Ok(Err(Some(e))) => Answer::error(e),
        Ok(Err(None)) | Err(_) => return,
    };
    respond(&mut stream, answer).await;
}

/// [`credentials`] with the sessions borrowed for the check only (signing in changes them).
fn verdict(ctl: &Ctl, req: &Req, sessions: &RefCell<session::Sessions>) -> Result<Access, Error> {
    let sessions = sessions.borrow();
    credentials(ctl, req, &sessions)
}

/// Writes the answer (one `h1::write_response`) and closes, within [`IO_TIMEOUT`].
async fn respond(stream: &mut TcpStream, answer: Answer) {
    const CHALLENGE: &[u8] = b"Bearer realm=\"smart-ai-router admin\"";
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b"content-type", answer.content_type),
        (b"cache-control", b"no-store"),
    ];
    if answer.challenge {
        headers.push((b"www-authenticate", CHALLENGE));
    }
    for (k, v) in &answer.extra {
        headers.push((k, v));
    }
    headers.push((b"connection", b"close"));
    let mut out = Vec::new();
    crate::h1::write_response(&mut out, answer.status, &headers, &answer.body);
    let _ = monoio::time::timeout(IO_TIMEOUT, async {
        let _ = stream.write_all(out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// The verdict on a head's credentials (the state is borrowed only for the check): a bearer
/// token, else a session cookie (with its CSRF token on writes), else 401; a cross-origin
/// write is refused first (403).
fn credentials(ctl: &Ctl, req: &Req, sessions: &session::Sessions) -> Result<Access, Error> {
    let read_only = matches!(req.method.as_str(), "GET" | "HEAD");
    if !read_only && !same_origin(req) {
        return Err(Error::new(
            403,
            Kind::Permission,
            "cross_origin",
            "admin changes are only accepted from pages of this listener",
        ));
    }
    if public(&req.method, &req.path) {
        return Ok(Access::Public);
    }
    let st = ctl.st.borrow();
    let Some(token) = st.cfg.admin.as_ref().and_then(|a| a.token.as_ref()) else {
        // The config allows no token only on a loopback listener (`validate::server::admin`).
        return authorized(&st, None).map(|()| Access::Open);
    };
    if req.authorization.is_some() {
        return authorized(&st, req.authorization.as_deref()).map(|()| Access::Bearer);
    }
    let found = req
        .cookie
        .as_deref()
        .and_then(|c| sessions.find(c, token.expose().as_bytes(), std::time::Instant::now()));
    let Some(s) = found else {
        // A token is configured: this is the 401 that says what is missing.
        return authorized(&st, None).map(|()| Access::Bearer);
    };
    let csrf_ok = req
        .csrf
        .as_deref()
        .is_some_and(|c| crate::secret::same(c.trim_ascii(), s.csrf.as_bytes()));
    if !read_only && !csrf_ok {
        return Err(Error::new(
            403,
            Kind::Permission,
            "csrf_token_required",
            "a request signed in by cookie must send the page's CSRF token in x-csrf-token",
        ));
    }
    Ok(Access::Session {
        csrf: s.csrf.clone(),
    })
}

/// True unless the request names an `Origin` whose host differs from its `Host` (browsers
/// send `Origin` on every cross-origin write).
fn same_origin(req: &Req) -> bool {
    let Some(origin) = req.origin.as_deref() else {
        return true;
    };
    let host = origin
        .iter()
        .position(|b| *b == b':')
        .filter(|&i| origin[i..].starts_with(b"://"))
        .map(|i| &origin[i + 3..]);
    match (host, req.host.as_deref()) {
        (Some(o), Some(h)) => o.trim_ascii().eq_ignore_ascii_case(h.trim_ascii()),
        _ => false,
    }
}

/// A request whose head was read: its body is still to come.
struct Headed {
    req: Req,
    /// Where the body starts in the connection buffer.
    start: usize,
    /// The body's length (`Content-Length`, at most [`MAX_BODY`]).
    len: usize,
}

/// Reads one request head into `buf`; `Err(None)` when the peer left before sending one.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Headed, Option<Error>> {
    let head = match crate::h1::read_request_head(stream, buf, 64, MAX_HEAD).await {
        Ok(head) => head,
        Err(ReadError::Closed) => return Err(None),
        Err(ReadError::Head(e)) => {
            return Err(Some(Error::bad_request(
                "invalid_request",
                format!("malformed admin request: {e:?}"),
            )));
        }
    };
    Ok(Headed {
        req: request(&head, buf),
        start: head.len,
        len: body_len(&head)?,
    })
}

/// Method, path, query and credentials of a parsed head (its body still to read).
fn request(head: &RequestHead, buf: &[u8]) -> Req {
    let text = |r: &std::ops::Range<usize>| String::from_utf8_lossy(&buf[r.clone()]).into_owned();
    let target = text(&head.target);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Req {
        method: text(&head.method_text),
        path: path.to_string(),
        query: query.to_string(),
        authorization: head.header(buf, b"authorization").map(<[u8]>::to_vec),
        cookie: head.header(buf, b"cookie").map(<[u8]>::to_vec),
        csrf: head.header(buf, b"x-csrf-token").map(<[u8]>::to_vec),
        origin: head.header(buf, b"origin").map(<[u8]>::to_vec),
        host: head.header(buf, b"host").map(<[u8]>::to_vec),
        body: Vec::new(),
    }
}

/// The body's length: `Content-Length` up to [`MAX_BODY`] (413 past it); chunked or
/// close-delimited bodies are refused (411).
fn body_len(head: &RequestHead) -> Result<usize, Option<Error>> {
    match head.body {
        Body::None => Ok(0),
        Body::Length(n) if n as usize <= MAX_BODY => Ok(n as usize),
        Body::Length(_) => Err(Some(Error::new(
            413,
            Kind::InvalidRequest,
            "request_too_large",
            format!("admin request bodies are at most {MAX_BODY} bytes"),
        ))),
        Body::Chunked | Body::Close => Err(Some(Error::new(
            411,
            Kind::InvalidRequest,
            "length_required",
            "send admin request bodies with Content-Length",
        ))),
    }
}

/// Reads the body of a request whose head was read; `Err(None)` when the peer left.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: Headed,
) -> Result<Req, Option<Error>> {
    let Headed {
        mut req,
        start,
        len,
    } = head;
    let end = start + len;
    if crate::h1::read_body(stream, buf, end).await.is_err() {
        return Err(None);
    }
    req.body = buf[start..end].to_vec();
    Ok(req)
}

fn authorized(st: &State, header: Option<&[u8]>) -> Result<(), Error> {
    let Some(token) = st.cfg.admin.as_ref().and_then(|a| a.token.as_ref()) else {
        return Ok(());
    };
    // The scheme is case-insensitive (RFC 9110 §11.1), as on the public API.
    let given = header
        .map(<[u8]>::trim_ascii)
        .filter(|h| h.len() > 7 && h[..7].eq_ignore_ascii_case(b"bearer "))
        .map(|h| h[7..].trim_ascii());
    match given {
        Some(g) if crate::secret::same(g, token.expose().as_bytes()) => Ok(()),
        Some(_) => Err(Error::new(
            401,
            Kind::Authentication,
            "invalid_admin_token",
            "the admin token is not valid",
        )),
        None => Err(Error::new(
            401,
            Kind::Authentication,
            "missing_admin_token",
            "the admin API needs `Authorization: Bearer <[admin] token>`",
        )),
    }
}
