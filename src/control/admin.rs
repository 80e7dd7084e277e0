//! The admin API, on its own listener (`[admin] listen`) inside the control thread's event
//! loop: see and steer channels, cooldowns, discovery, snapshots and reloads. Formats are
//! documented in the README ("Admin API").
//!
//! Invariants: with `[admin] token` set, every request must carry `Authorization: Bearer
//! <token>` (the scheme in any case), compared in constant time, and checked on the head,
//! before any body byte is read; without one the config only allows a loopback address. No
//! response ever contains an API key: channels show an 8-hex SHA-256 fingerprint. Overrides
//! are persisted before the answer is sent. One request per connection, bounded in size
//! (64 KiB body) and time (the head within [`HEAD_TIMEOUT`], the body within 10 s), at most
//! [`MAX_CONNECTIONS`] at once. Idle or slow peers cannot lock operators out: when every slot
//! is taken, the oldest connection that has not yet authenticated is closed to make room (an
//! authenticated one is never closed for a newcomer). Never panics on input.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use simd_json::prelude::*;

use super::{Ctl, Fetch, State};
use crate::error::{Error, Kind};
use crate::h1::head::{Body, RequestHead};
use crate::json::Writer;
use crate::routing::health::{Health, State as HealthState};

/// Concurrent admin connections; when all are taken, the oldest unauthenticated one makes room.
pub const MAX_CONNECTIONS: usize = 64;
/// A request head (and so its credentials) must arrive this soon after the connection opened.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(3);
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
pub async fn serve(ctl: Rc<Ctl>, listener: TcpListener) {
    let slots = Rc::new(Slots::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            monoio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(slot) = slots.admit() else {
            drop(stream);
            continue;
        };
        let (ctl, slots) = (ctl.clone(), slots.clone());
        monoio::spawn(async move {
            monoio::select! {
                _ = connection(&ctl, stream, &slot) => {}
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
    body: Vec<u8>,
}

/// An answer: status, JSON body, extra headers.
struct Answer {
    status: u16,
    body: Vec<u8>,
    challenge: bool,
    content_type: &'static [u8],
}

impl Answer {
    fn ok(w: Writer) -> Answer {
        Answer {
            status: 200,
            body: w.out,
            challenge: false,
            content_type: b"application/json",
        }
    }
    fn error(e: Error) -> Answer {
        Answer {
            status: e.status,
            body: e.body(),
            challenge: e.status == 401,
            content_type: b"application/json",
        }
    }
}

/// One request: the head within [`HEAD_TIMEOUT`], its credentials checked before the body is
/// read, the body and the answer each within [`IO_TIMEOUT`]; the handling is not bounded (a
/// reload is bounded on its own, and must not be cut short by a slow client).
async fn connection(ctl: &Rc<Ctl>, mut stream: TcpStream, slot: &Slot) {
    let answer = match monoio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => match credentials(ctl, &head) {
            Err(e) => Answer::error(e),
            Ok(()) => {
                slot.authed.set(true);
                match monoio::time::timeout(IO_TIMEOUT, read_body(&mut stream, head)).await {
                    Ok(Ok(req)) => handle(ctl, req).await,
                    Ok(Err(Some(e))) => Answer::error(e),
                    Ok(Err(None)) | Err(_) => return,
                }
            }
        },
        Ok(Err(Some(e))) => Answer::error(e),
        Ok(Err(None)) | Err(_) => return,
    };
    let mut out = Vec::with_capacity(answer.body.len() + 160);
    crate::h1::write_status_line(&mut out, answer.status);
    crate::h1::write_header(&mut out, b"content-type", answer.content_type);
    crate::h1::write_header(
        &mut out,
        b"content-length",
        itoa::Buffer::new().format(answer.body.len()).as_bytes(),
    );
    crate::h1::write_header(&mut out, b"cache-control", b"no-store");
    if answer.challenge {
        crate::h1::write_header(
            &mut out,
            b"www-authenticate",
            b"Bearer realm=\"smart-ai-router admin\"",
        );
    }
    crate::h1::write_header(&mut out, b"connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&answer.body);
    let _ = monoio::time::timeout(IO_TIMEOUT, async {
        let _ = stream.write_all(out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// The verdict on a head's credentials (the state is borrowed only for the check).
fn credentials(ctl: &Ctl, head: &Headed) -> Result<(), Error> {
    authorized(&ctl.st.borrow(), head.req.authorization.as_deref())
}

/// A request whose head was read: its body is still to come.
struct Headed {
    req: Req,
    /// Bytes read past the head (the body's start).
    rest: Vec<u8>,
    len: usize,
}

/// Reads one request head; `Err(None)` when the peer left before sending one.
async fn read_head(stream: &mut TcpStream) -> Result<Headed, Option<Error>> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let head = loop {
        match RequestHead::parse(&buf, 64, MAX_HEAD) {
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(e) => {
                return Err(Some(Error::bad_request(
                    "invalid_request",
                    format!("malformed admin request: {e:?}"),
                )));
            }
        }
        if read_more(stream, &mut buf).await == 0 {
            return Err(None);
        }
    };
    let text = |r: &std::ops::Range<usize>| String::from_utf8_lossy(&buf[r.clone()]).into_owned();
    let method = text(&head.method_text);
    let target = text(&head.target);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let authorization = head
        .headers
        .iter()
        .find(|h| buf[h.name.clone()].eq_ignore_ascii_case(b"authorization"))
        .map(|h| buf[h.value.clone()].to_vec());
    let len = match head.body {
        Body::None => 0,
        Body::Length(n) if n as usize <= MAX_BODY => n as usize,
        Body::Length(_) => {
            return Err(Some(Error::new(
                413,
                Kind::InvalidRequest,
                "request_too_large",
                format!("admin request bodies are at most {MAX_BODY} bytes"),
            )));
        }
        Body::Chunked | Body::Close => {
            return Err(Some(Error::new(
                411,
                Kind::InvalidRequest,
                "length_required",
                "send admin request bodies with Content-Length",
            )));
        }
    };
    let rest = buf.split_off(head.len);
    Ok(Headed {
        req: Req {
            method,
            path,
            query,
            authorization,
            body: Vec::new(),
        },
        rest,
        len,
    })
}

/// Reads the body of a request whose head was read; `Err(None)` when the peer left.
async fn read_body(stream: &mut TcpStream, head: Headed) -> Result<Req, Option<Error>> {
    let Headed {
        mut req,
        mut rest,
        len,
    } = head;
    while rest.len() < len {
        if read_more(stream, &mut rest).await == 0 {
            return Err(None);
        }
    }
    rest.truncate(len);
    req.body = rest;
    Ok(req)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    if buf.len() > MAX_HEAD + MAX_BODY {
        return 0;
    }
    let chunk = Vec::with_capacity(4096);
    let (r, chunk) = stream.read(chunk).await;
    match r {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        Err(_) => 0,
    }
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

fn not_found(what: &str) -> Error {
    Error::new(404, Kind::InvalidRequest, "not_found", what.to_string())
}

/// Answers a request whose credentials [`connection`] accepted.
async fn handle(ctl: &Rc<Ctl>, req: Req) -> Answer {
    let parts: Vec<String> = req
        .path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(|p| crate::h1::percent_decode(p.as_bytes()))
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    let epoch_before = ctl.st.borrow().current.epoch;
    let result = match (m, parts.as_slice()) {
        ("GET", ["admin", "channels"]) => Ok(channels(&ctl.st.borrow(), None)),
        ("GET", ["admin", "channels", id]) => {
            let st = ctl.st.borrow();
            Ctl::channel_index(&st, id)
                .map(|i| channels(&st, Some(i)))
                .ok_or_else(|| not_found(&format!("no channel `{id}`")))
        }
        ("POST", ["admin", "channels", id, "enable"]) => {
            set_override(ctl, id, |o| o.enabled = Some(true))
        }
        ("POST", ["admin", "channels", id, "disable"]) => {
            set_override(ctl, id, |o| o.enabled = Some(false))
        }
        ("PUT", ["admin", "channels", id, "priority"]) => match priority(&req.body) {
            Ok(p) => set_override(ctl, id, |o| o.priority = Some(p)),
            Err(e) => Err(e),
        },
        ("DELETE", ["admin", "channels", id, "overrides"]) => clear_overrides(ctl, id),
        ("GET", ["admin", "cooldowns"]) => Ok(cooldowns(&ctl.st.borrow())),
        ("DELETE", ["admin", "cooldowns"]) => Ok(clear_cooldowns(ctl, None)),
        ("DELETE", ["admin", "cooldowns", id]) => {
            let i = Ctl::channel_index(&ctl.st.borrow(), id);
            match i {
                Some(i) => Ok(clear_cooldowns(ctl, Some(i))),
                None => Err(not_found(&format!("no channel `{id}`"))),
            }
        }
        ("POST", ["admin", "discovery", "refresh"]) => refresh(ctl, &req.body),
        ("GET", ["admin", "snapshot"]) => Ok(snapshot(ctl)),
        ("GET", ["metrics"]) => {
            return Answer {
                status: 200,
                body: render_metrics(ctl).into_bytes(),
                challenge: false,
                content_type: b"text/plain; version=0.0.4; charset=utf-8",
            };
        }
        ("GET", ["admin", "usage"]) => usage(ctl, &req.query).await,
        ("GET", ["admin", "cluster"]) => cluster(ctl),
        ("POST", ["admin", "reload"]) => {
            return match super::reload::reload(ctl).await {
                Ok(r) => {
                    let mut w = Writer::new();
                    w.obj().key("status").str("reloaded");
                    w.key("epoch")
                        .uint(r.epoch)
                        .key("generation")
                        .uint(r.generation);
                    w.key("channels").uint(r.channels as u64);
                    w.key("entries").uint(r.entries as u64);
                    w.key("restart_required").arr();
                    for s in &r.restart_required {
                        w.str(s);
                    }
                    w.end_arr().end_obj();
                    Answer::ok(w)
                }
                Err(errors) => {
                    let e = Error::new(
                        422,
                        Kind::InvalidRequest,
                        "config_rejected",
                        format!(
                            "config rejected, the previous one keeps serving: {}",
                            errors.join("; ")
                        ),
                    );
                    Answer::error(e)
                }
            };
        }
        _ if known_path(&parts) => Err(Error::method_not_allowed(m, &req.path, allowed(&parts))),
        _ => Err(Error::unknown_route(m, &req.path)),
    };
    // A change answers once it is durable and every worker routes by it.
    let saved = ctl.pending_save.take();
    if let Some(done) = saved {
        super::written(&done, super::PROPAGATION_WAIT).await;
    }
    let epoch = ctl.st.borrow().current.epoch;
    if epoch != epoch_before {
        super::propagated(ctl, epoch).await;
    }
    match result {
        Ok(w) => Answer::ok(w),
        Err(e) => Answer::error(e),
    }
}

fn known_path(parts: &[&str]) -> bool {
    matches!(
        parts,
        ["admin", "channels"]
            | ["admin", "channels", _]
            | [
                "admin",
                "channels",
                _,
                "enable" | "disable" | "priority" | "overrides"
            ]
            | ["admin", "cooldowns"]
            | ["admin", "cooldowns", _]
            | ["admin", "discovery", "refresh"]
            | ["admin", "snapshot"]
            | ["admin", "usage"]
            | ["admin", "cluster"]
            | ["admin", "reload"]
            | ["metrics"]
    )
}

fn allowed(parts: &[&str]) -> &'static str {
    match parts {
        ["admin", "channels"]
        | ["admin", "channels", _]
        | ["admin", "snapshot"]
        | ["admin", "usage"]
        | ["admin", "cluster"]
        | ["metrics"] => "GET",
        ["admin", "channels", _, "priority"] => "PUT",
        ["admin", "channels", _, "overrides"] | ["admin", "cooldowns", _] => "DELETE",
        ["admin", "cooldowns"] => "GET, DELETE",
        _ => "POST",
    }
}

/// `GET /metrics`: request metrics from usage records, then the control thread's own state.
fn render_metrics(ctl: &Ctl) -> String {
    use super::metrics::{escape, header};
    use std::fmt::Write as _;
    let st = ctl.st.borrow();
    let mut out = String::with_capacity(16 * 1024);
    st.metrics.render(&mut out, &st.cfg.pricing.currency);
    header(
        &mut out,
        "smart_router_build_info",
        "gauge",
        "Always 1: the version and the I/O driver in use.",
    );
    let _ = writeln!(
        out,
        "smart_router_build_info{{version=\"{}\",driver=\"{}\"}} 1",
        crate::VERSION,
        ctl.board.driver.driver.as_str()
    );
    header(
        &mut out,
        "smart_router_snapshot_epoch",
        "gauge",
        "Snapshot epoch each worker routes by (worker=\"control\": the latest published).",
    );
    let _ = writeln!(
        out,
        "smart_router_snapshot_epoch{{worker=\"control\"}} {}",
        st.current.epoch
    );
    for (i, e) in ctl.board.epochs().iter().enumerate() {
        let _ = writeln!(out, "smart_router_snapshot_epoch{{worker=\"{i}\"}} {e}");
    }
    let gauges = &ctl.board.gauges;
    for (name, kind, help, pick) in [
        (
            "smart_router_worker_connections",
            "gauge",
            "Open client connections per worker (as of its last tick).",
            0,
        ),
        (
            "smart_router_worker_in_flight",
            "gauge",
            "Requests being handled per worker.",
            1,
        ),
        (
            "smart_router_worker_streams",
            "gauge",
            "SSE streams being relayed per worker.",
            2,
        ),
        (
            "smart_router_worker_requests_total",
            "counter",
            "Requests handled per worker since start.",
            3,
        ),
        (
            "smart_router_worker_buffered_bytes",
            "gauge",
            "Bytes of request and response bodies a worker holds (bounded by server.max_buffered).",
            4,
        ),
        (
            "smart_router_worker_overloaded_total",
            "counter",
            "Requests a worker answered 503 overloaded because server.max_buffered was reached.",
            5,
        ),
    ] {
        header(&mut out, name, kind, help);
        for (i, g) in gauges.iter().enumerate() {
            let v = [
                &g.connections,
                &g.in_flight,
                &g.streams,
                &g.requests,
                &g.buffered,
                &g.overloaded,
            ][pick]
                .load(std::sync::atomic::Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {v}");
        }
    }
    header(
        &mut out,
        "smart_router_worker_loop_lag_seconds",
        "gauge",
        "How late each worker's tick timer fired (event-loop lag); `max` since start.",
    );
    for (i, g) in gauges.iter().enumerate() {
        let now_us = g.loop_lag_us.load(std::sync::atomic::Ordering::Relaxed);
        let max_us = g.loop_lag_max_us.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(
            out,
            "smart_router_worker_loop_lag_seconds{{worker=\"{i}\",stat=\"last\"}} {}",
            now_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "smart_router_worker_loop_lag_seconds{{worker=\"{i}\",stat=\"max\"}} {}",
            max_us as f64 / 1e6
        );
    }
    header(
        &mut out,
        "smart_router_stream_event_gap_seconds",
        "histogram",
        "Time between consecutive event batches relayed to a streaming client (every worker).",
    );
    let mut counts = [0u64; crate::worker::LATENCY_BUCKETS.len() + 1];
    let mut gap_sum = 0.0;
    for g in gauges.iter() {
        let (c, s) = g.gaps();
        for (a, b) in counts.iter_mut().zip(c) {
            *a += b;
        }
        gap_sum += s;
    }
    super::metrics::Histogram::from_parts(counts, gap_sum).render(
        &mut out,
        "smart_router_stream_event_gap_seconds",
        "",
    );
    header(
        &mut out,
        "smart_router_channel_up",
        "gauge",
        "1 when the channel takes traffic (enabled, not cooling down, daily quota left).",
    );
    let now = Instant::now();
    let live = st.merger.view();
    let mut cooling = String::new();
    for (i, ch) in st.current.channels.iter().enumerate() {
        let health = live.channels.get(i).copied().unwrap_or_default();
        let state = health.state(now);
        let up = ch.enabled
            && !matches!(state, HealthState::Cooling(_))
            && !st.current.quota.channel_spent(i);
        let labels = format!(
            "channel=\"{}\",provider=\"{}\"",
            escape(&ch.id),
            escape(&ch.provider)
        );
        let _ = writeln!(out, "smart_router_channel_up{{{labels}}} {}", u8::from(up));
        let left = match state {
            HealthState::Cooling(until) => until.saturating_duration_since(now).as_secs_f64(),
            _ => 0.0,
        };
        let _ = writeln!(
            cooling,
            "smart_router_channel_cooldown_seconds{{{labels},reason=\"{}\"}} {left}",
            health.why.as_str()
        );
    }
    header(
        &mut out,
        "smart_router_channel_cooldown_seconds",
        "gauge",
        "Seconds left of the channel's cooldown (0 when none), with the reason of the last change.",
    );
    out.push_str(&cooling);
    header(
        &mut out,
        "smart_router_daily_cost",
        "gauge",
        "Spend so far this UTC day, in the configured currency (resets at 00:00 UTC).",
    );
    let _ = writeln!(
        out,
        "smart_router_daily_cost{{currency=\"{}\"}} {}",
        escape(&st.cfg.pricing.currency),
        st.ledger.cost
    );
    header(
        &mut out,
        "smart_router_budget_exhausted",
        "gauge",
        "1 when the global [pricing] daily_budget is spent (requests answer 429).",
    );
    let _ = writeln!(
        out,
        "smart_router_budget_exhausted {}",
        u8::from(st.current.quota.global.is_some())
    );
    #[cfg(feature = "cluster")]
    if let Some(f) = &*ctl.cluster.borrow() {
        header(
            &mut out,
            "smart_router_cluster_connected",
            "gauge",
            "1 while the last sync round with the fleet's Redis succeeded; 0: serving on local state.",
        );
        let _ = writeln!(
            out,
            "smart_router_cluster_connected {}",
            u8::from(f.connected)
        );
        header(
            &mut out,
            "smart_router_cluster_instances",
            "gauge",
            "Live instances of the fleet (heartbeat within 60 s), this one included, as of the last round.",
        );
        let _ = writeln!(out, "smart_router_cluster_instances {}", f.instances.len());
        header(
            &mut out,
            "smart_router_cluster_rounds_total",
            "counter",
            "Sync rounds with Redis, by result.",
        );
        let _ = writeln!(
            out,
            "smart_router_cluster_rounds_total{{result=\"ok\"}} {}",
            f.rounds.0
        );
        let _ = writeln!(
            out,
            "smart_router_cluster_rounds_total{{result=\"failed\"}} {}",
            f.rounds.1
        );
        header(
            &mut out,
            "smart_router_cluster_round_seconds",
            "gauge",
            "Round-trip time of the last successful sync round.",
        );
        let _ = writeln!(
            out,
            "smart_router_cluster_round_seconds {}",
            f.last_rtt.map_or(0.0, |d| d.as_secs_f64())
        );
    }
    out
}

/// Longest range `/admin/usage` reads (days of files).
const USAGE_MAX_DAYS: u64 = 366;

/// `GET /admin/usage?since=&until=&group_by=`: totals from the usage files over
/// `[since, until)` (dates `YYYY-MM-DD` or Unix seconds; default: today so far), grouped by
/// channel (default), model or provider.
async fn usage(ctl: &Rc<Ctl>, query: &str) -> Result<Writer, Error> {
    use crate::clock::{day, parse_time};
    use crate::usage::{GroupBy, Summary};
    let mut since = None;
    let mut until = None;
    let mut by = GroupBy::Channel;
    let mut fleet = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = crate::h1::percent_decode(v.as_bytes());
        let bad = |what: &str| Error::bad_request("invalid_query", what.to_string());
        match k {
            "since" => {
                since =
                    Some(parse_time(&v).ok_or_else(|| {
                        bad("`since` must be a date (YYYY-MM-DD) or Unix seconds")
                    })?)
            }
            "until" => {
                until =
                    Some(parse_time(&v).ok_or_else(|| {
                        bad("`until` must be a date (YYYY-MM-DD) or Unix seconds")
                    })?)
            }
            "group_by" => {
                by = GroupBy::parse(&v)
                    .ok_or_else(|| bad("`group_by` must be channel, model, provider or key"))?
            }
            "scope" => {
                fleet = match &*v {
                    "instance" => false,
                    "fleet" => true,
                    _ => return Err(bad("`scope` must be instance or fleet")),
                }
            }
            _ => {
                return Err(bad(&format!(
                    "unknown query parameter `{}`",
                    crate::error::truncate(k, 40)
                )));
            }
        }
    }
    let now_ms = crate::clock::now_ms();
    let since = since.unwrap_or(now_ms - now_ms % 86_400_000);
    let until = until.unwrap_or(now_ms + 1);
    if until <= since {
        return Err(Error::bad_request(
            "invalid_query",
            "`until` must be after `since`",
        ));
    }
    if (until - since) / 86_400_000 > USAGE_MAX_DAYS {
        return Err(Error::bad_request(
            "invalid_query",
            format!("ask for at most {USAGE_MAX_DAYS} days at a time"),
        ));
    }
    if fleet {
        #[cfg(feature = "cluster")]
        return fleet_usage(ctl, since, until, by).await;
        #[cfg(not(feature = "cluster"))]
        return Err(Error::bad_request(
            "no_cluster",
            "scope=fleet needs a [cluster] section (and this build has no `cluster` feature)",
        ));
    }
    // Records merged so far reach the files first.
    ctl.merge_reports(&mut ctl.st.borrow_mut());
    if let Some(done) = ctl.store.flush() {
        super::written(&done, super::PROPAGATION_WAIT).await;
    }
    // Day numbers, not milliseconds: bounded by the range check above, nothing can overflow.
    let files: Vec<std::path::PathBuf> = (since / 86_400_000..=(until - 1) / 86_400_000)
        .filter_map(|d| ctl.store.usage_file(&day(d * 86_400_000)))
        .collect();
    // Reading and parsing up to a year of files is slow: a helper thread does it, so the
    // control loop keeps publishing, merging and answering meanwhile.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let spawned = std::thread::Builder::new()
        .name("sar-usage-scan".into())
        .spawn(move || {
            let mut summary = Summary::default();
            for path in files {
                if let Ok(text) = std::fs::read(&path) {
                    summary.add_lines(&text, since, until, by);
                }
            }
            let _ = tx.send(summary);
        });
    if spawned.is_err() {
        return Err(Error::internal("could not start the usage scan"));
    }
    let summary = loop {
        match rx.try_recv() {
            Ok(s) => break s,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                monoio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                return Err(Error::internal("the usage scan failed"));
            }
        }
    };
    let mut w = Writer::new();
    w.obj();
    usage_answer(
        &mut w,
        ctl,
        (since / 1000, until / 1000),
        "instance",
        by,
        &summary,
    );
    w.key("skipped_lines").uint(summary.skipped);
    w.key("persisted").bool(ctl.store.dir().is_some());
    w.end_obj();
    Ok(w)
}

/// `GET /admin/usage?scope=fleet`: the fleet's totals from Redis, by whole UTC days (the
/// fleet keeps day totals, not records): every day `[since, until)` touches.
#[cfg(feature = "cluster")]
async fn fleet_usage(
    ctl: &Rc<Ctl>,
    since: u64,
    until: u64,
    by: crate::usage::GroupBy,
) -> Result<Writer, Error> {
    use crate::clock::day;
    use crate::cluster::schema::parse_usage_field;
    let first = since / 86_400_000;
    let last = (until - 1) / 86_400_000;
    let days: Vec<String> = (first..=last).map(|d| day(d * 86_400_000)).collect();
    let rx = match &*ctl.cluster.borrow() {
        None => {
            return Err(Error::bad_request(
                "no_cluster",
                "scope=fleet needs a [cluster] section (this instance runs alone)",
            ));
        }
        Some(f) => f.usage_query(days),
    };
    let Some(rx) = rx else {
        return Err(Error::internal("the cluster helper thread has stopped"));
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let sums = loop {
        match rx.try_recv() {
            Ok(Ok(s)) => break s,
            Ok(Err(e)) => {
                return Err(Error::new(
                    503,
                    Kind::Server,
                    "cluster_unavailable",
                    format!("cannot read the fleet's usage from Redis: {e}"),
                ));
            }
            Err(_) if Instant::now() >= deadline => {
                return Err(Error::new(
                    504,
                    Kind::Server,
                    "cluster_timeout",
                    "Redis did not answer in time",
                ));
            }
            Err(_) => monoio::time::sleep(Duration::from_millis(2)).await,
        }
    };
    let mut summary = crate::usage::Summary::default();
    for (field, v) in &sums {
        let Some((group, name, metric)) = parse_usage_field(field) else {
            continue;
        };
        let t = match group {
            "total" => &mut summary.total,
            g if g == by.field() => summary.groups.entry(name.to_string()).or_default(),
            _ => continue,
        };
        t.merge_metric(metric, *v, |a, b| a + b);
    }
    let mut w = Writer::new();
    w.obj();
    let range = (first * 86_400, (last + 1) * 86_400);
    usage_answer(&mut w, ctl, range, "fleet", by, &summary);
    w.end_obj();
    Ok(w)
}

/// The members both scopes of `/admin/usage` answer with, `(since, until)` in Unix seconds.
fn usage_answer(
    w: &mut Writer,
    ctl: &Ctl,
    (since, until): (u64, u64),
    scope: &str,
    by: crate::usage::GroupBy,
    summary: &crate::usage::Summary,
) {
    w.key("since").uint(since);
    w.key("until").uint(until);
    w.key("scope").str(scope);
    w.key("group_by").str(by.field());
    let currency = ctl.st.borrow().cfg.pricing.currency.clone();
    w.key("currency").str(&currency);
    w.key("groups").arr();
    for (k, t) in &summary.groups {
        w.obj().key("key").str(k);
        usage_totals(w, t);
        w.end_obj();
    }
    w.end_arr();
    w.key("total").obj();
    usage_totals(w, &summary.total);
    w.end_obj();
}

fn usage_totals(w: &mut Writer, t: &crate::usage::Totals) {
    w.key("requests").uint(t.requests);
    w.key("errors").uint(t.errors);
    w.key("prompt_tokens").uint(t.prompt_tokens);
    w.key("completion_tokens").uint(t.completion_tokens);
    w.key("cached_tokens").uint(t.cached_tokens);
    w.key("cost").num_exact(t.cost);
}

/// `GET /admin/cluster` in a build without the `cluster` feature: there is no fleet.
#[cfg(not(feature = "cluster"))]
fn cluster(_: &Ctl) -> Result<Writer, Error> {
    Err(not_found(
        "no [cluster] section: this instance runs alone (this build has no `cluster` feature)",
    ))
}

/// `GET /admin/cluster`: this instance's view of the fleet (`[cluster]`).
#[cfg(feature = "cluster")]
fn cluster(ctl: &Ctl) -> Result<Writer, Error> {
    let guard = ctl.cluster.borrow();
    let Some(f) = &*guard else {
        return Err(not_found("no [cluster] section: this instance runs alone"));
    };
    let mut w = Writer::new();
    w.obj();
    w.key("instance_id").str(&f.cfg.instance_id);
    w.key("redis").str(&f.cfg.redis_shown());
    w.key("prefix").str(&f.cfg.prefix);
    w.key("sync_interval_ms")
        .uint(f.cfg.sync_interval.as_millis() as u64);
    w.key("connected").bool(f.connected);
    w.key("instances").arr();
    for i in &f.instances {
        w.str(i);
    }
    w.end_arr();
    w.key("rounds_ok").uint(f.rounds.0);
    w.key("rounds_failed").uint(f.rounds.1);
    match f.last_rtt {
        Some(d) => w.key("last_round_ms").num(d.as_secs_f64() * 1000.0),
        None => w.key("last_round_ms").null(),
    };
    match &f.last_error {
        Some(e) => w.key("last_error").str(e),
        None => w.key("last_error").null(),
    };
    w.key("rate_shares").obj();
    for sh in &f.shares {
        w.key(&sh.field)
            .obj()
            .key("share")
            .num(sh.share)
            .key("demand")
            .num(sh.mine)
            .key("demand_others")
            .num(sh.theirs)
            .end_obj();
    }
    w.end_obj();
    w.key("grants").obj();
    for (counter, held, total) in f.grants() {
        w.key(&counter)
            .obj()
            .key("held")
            .num_exact(held)
            .key("granted_fleet")
            .num_exact(total)
            .end_obj();
    }
    w.end_obj();
    w.end_obj();
    Ok(w)
}

/// `{"priority": N}` with N an integer in ±1,000,000.
fn priority(body: &[u8]) -> Result<i32, Error> {
    let bad = || {
        Error::bad_request(
            "invalid_priority",
            "send {\"priority\": N} with N an integer between -1000000 and 1000000",
        )
    };
    let mut copy = body.to_vec();
    let v = simd_json::to_owned_value(&mut copy).map_err(|_| bad())?;
    let p = v.get("priority").and_then(|p| p.as_i64()).ok_or_else(bad)?;
    if !(-1_000_000..=1_000_000).contains(&p) {
        return Err(bad());
    }
    Ok(p as i32)
}

fn set_override(
    ctl: &Rc<Ctl>,
    id: &str,
    change: impl FnOnce(&mut crate::snapshot::ChannelOverride),
) -> Result<Writer, Error> {
    let mut st = ctl.st.borrow_mut();
    let st = &mut *st;
    if !st.cfg.channels.iter().any(|c| c.id == id) {
        return Err(not_found(&format!("no channel `{id}` in the config")));
    }
    change(st.overrides.channels.entry(id.to_string()).or_default());
    ctl.pending_save
        .set(ctl.store.save_overrides(&st.overrides));
    ctl.rebuild(st);
    tracing::info!(channel = id, "admin override set");
    let i = Ctl::channel_index(st, id).ok_or_else(|| not_found(id))?;
    Ok(channels(st, Some(i)))
}

fn clear_overrides(ctl: &Rc<Ctl>, id: &str) -> Result<Writer, Error> {
    let mut st = ctl.st.borrow_mut();
    let st = &mut *st;
    if st.overrides.channels.remove(id).is_none() {
        return Err(not_found(&format!("channel `{id}` has no overrides")));
    }
    ctl.pending_save
        .set(ctl.store.save_overrides(&st.overrides));
    ctl.rebuild(st);
    tracing::info!(channel = id, "admin overrides cleared");
    match Ctl::channel_index(st, id) {
        Some(i) => Ok(channels(st, Some(i))),
        None => {
            let mut w = Writer::new();
            w.obj().key("id").str(id).key("overrides").null().end_obj();
            Ok(w)
        }
    }
}

fn clear_cooldowns(ctl: &Rc<Ctl>, channel: Option<usize>) -> Writer {
    let mut st = ctl.st.borrow_mut();
    let st = &mut *st;
    let cleared = st.merger.clear(channel, Instant::now());
    ctl.publish_live(st);
    tracing::info!(cleared, "admin cleared cooldowns");
    let mut w = Writer::new();
    w.obj().key("cleared").uint(cleared as u64);
    w.key("epoch").uint(st.current.epoch).end_obj();
    w
}

fn refresh(ctl: &Rc<Ctl>, body: &[u8]) -> Result<Writer, Error> {
    let ids = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let mut copy = body.to_vec();
        let bad = || {
            Error::bad_request(
                "invalid_body",
                "send nothing, or {\"channels\": [\"id\", …]}",
            )
        };
        let v = simd_json::to_owned_value(&mut copy).map_err(|_| bad())?;
        let list = v
            .get("channels")
            .and_then(|c| c.as_array())
            .ok_or_else(bad)?;
        let ids: Vec<String> = list
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        let st = ctl.st.borrow();
        if let Some(unknown) = ids.iter().find(|id| Ctl::channel_index(&st, id).is_none()) {
            return Err(not_found(&format!("no channel `{unknown}`")));
        }
        Some(ids)
    };
    ctl.want_discovery(ids);
    let mut w = Writer::new();
    w.obj().key("status").str("started");
    w.key("running").bool(ctl.discovering.get()).end_obj();
    Ok(w)
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `{"state":…,"reason":…,"failures":…,"remaining_s":…,"until_unix":…}`
fn write_health(w: &mut Writer, h: &Health, now: Instant, wall: SystemTime) {
    w.obj();
    let (state, until) = match h.state(now) {
        HealthState::Ok => ("ok", None),
        HealthState::HalfOpen => ("half_open", None),
        HealthState::Cooling(t) => ("cooling", Some(t.duration_since(now))),
    };
    w.key("state").str(state);
    w.key("reason").str(h.why.as_str());
    w.key("failures").uint(u64::from(h.failures));
    match until {
        Some(left) => {
            w.key("remaining_s").num(left.as_secs_f64());
            w.key("until_unix").num(unix(wall + left));
        }
        None => {
            w.key("remaining_s").null();
            w.key("until_unix").null();
        }
    }
    w.end_obj();
}

fn write_fetch(w: &mut Writer, f: Option<&Fetch>) {
    let Some(f) = f else {
        w.null();
        return;
    };
    w.obj().key("at_unix").num(unix(f.at)).key("ok").bool(f.ok);
    match f.status {
        Some(s) => w.key("status").uint(u64::from(s)),
        None => w.key("status").null(),
    };
    w.key("detail")
        .str(&f.detail)
        .key("ms")
        .num(f64::from(f.ms));
    if let Some(n) = f.models {
        w.key("models").uint(n as u64);
    }
    w.end_obj();
}

/// Every channel (`None`) or one, with health, cooldowns, stats, fetches and overrides.
fn channels(st: &State, only: Option<usize>) -> Writer {
    let now = Instant::now();
    let wall = SystemTime::now();
    let snap = &st.current;
    let live = st.merger.view();
    let mut w = Writer::new();
    if only.is_none() {
        w.obj().key("object").str("list").key("data").arr();
    }
    for (i, ch) in snap.channels.iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let cfg = st.cfg.channels.iter().find(|c| *c.id == *ch.id);
        let health = live.channels.get(i).copied().unwrap_or_default();
        let state = if !ch.enabled {
            "disabled"
        } else {
            match health.state(now) {
                HealthState::Ok => "ok",
                HealthState::HalfOpen => "half_open",
                HealthState::Cooling(_) => "cooling",
            }
        };
        w.obj();
        w.key("id")
            .str(&ch.id)
            .key("provider")
            .str(&ch.provider)
            .key("kind")
            .str(&ch.kind);
        let scheme = match ch.endpoint.scheme {
            crate::config::Scheme::Http => "http",
            crate::config::Scheme::Https => "https",
        };
        w.key("endpoint")
            .str(&format!("{scheme}://{}", ch.endpoint.authority));
        w.key("key_fingerprint")
            .str(&format!("sha256:{}", ch.key_fingerprint));
        w.key("state").str(state);
        w.key("enabled")
            .bool(ch.enabled)
            .key("priority")
            .int(i64::from(ch.priority));
        w.key("weight").num(ch.weight);
        w.key("config").obj();
        match cfg {
            Some(c) => {
                w.key("enabled")
                    .bool(c.enabled)
                    .key("priority")
                    .int(i64::from(c.priority));
                w.key("models").uint(c.models.len() as u64);
            }
            None => {
                w.key("enabled").null().key("priority").null();
            }
        }
        w.end_obj();
        w.key("overrides");
        match st.overrides.channels.get(&*ch.id) {
            Some(o) => {
                w.obj();
                match o.enabled {
                    Some(e) => w.key("enabled").bool(e),
                    None => w.key("enabled").null(),
                };
                match o.priority {
                    Some(p) => w.key("priority").int(i64::from(p)),
                    None => w.key("priority").null(),
                };
                w.end_obj();
            }
            None => {
                w.null();
            }
        }
        w.key("health");
        write_health(&mut w, &health, now, wall);
        // Entries of this channel: models, model cooldowns, stats.
        let (mut models, mut samples, mut lat, mut ttft, mut succ) = (0u64, 0u64, 0f64, 0f64, 0f64);
        let (mut lat_n, mut ttft_n) = (0u64, 0u64);
        w.key("model_cooldowns").arr();
        for (e, el) in snap.catalog.entries.iter().zip(live.entries.iter()) {
            if e.channel as usize != i {
                continue;
            }
            models += 1;
            samples += u64::from(el.samples);
            succ += f64::from(el.success);
            if !el.latency_ms.is_nan() {
                lat += f64::from(el.latency_ms) * f64::from(el.samples.max(1));
                lat_n += u64::from(el.samples.max(1));
            }
            if !el.ttft_ms.is_nan() {
                ttft += f64::from(el.ttft_ms) * f64::from(el.samples.max(1));
                ttft_n += u64::from(el.samples.max(1));
            }
            if el.health.failures > 0 || el.health.until.is_some_and(|t| t > now) {
                w.obj().key("model").str(&e.model).key("health");
                write_health(&mut w, &el.health, now, wall);
                w.end_obj();
            }
        }
        w.end_arr();
        w.key("models").uint(models);
        w.key("discovered_models")
            .uint(st.discovered.get(&*ch.id).map_or(0, |d| d.len() as u64));
        w.key("stats").obj().key("samples").uint(samples);
        w.key("latency_ms").num(if lat_n > 0 {
            lat / lat_n as f64
        } else {
            f64::NAN
        });
        w.key("ttft_ms").num(if ttft_n > 0 {
            ttft / ttft_n as f64
        } else {
            f64::NAN
        });
        w.key("success_rate").num(if models > 0 {
            succ / models as f64
        } else {
            f64::NAN
        });
        w.end_obj();
        let status = st.status.get(&*ch.id);
        w.key("discovery");
        write_fetch(&mut w, status.and_then(|s| s.discovery.as_ref()));
        w.key("probe");
        write_fetch(&mut w, status.and_then(|s| s.probe.as_ref()));
        w.end_obj();
    }
    if only.is_none() {
        w.end_arr().end_obj();
    }
    w
}

/// Every cooldown in effect or half-open, channel-level and model-level.
fn cooldowns(st: &State) -> Writer {
    let now = Instant::now();
    let wall = SystemTime::now();
    let snap = &st.current;
    let live = st.merger.view();
    let mut w = Writer::new();
    w.obj().key("object").str("list").key("data").arr();
    for (i, (ch, h)) in snap.channels.iter().zip(live.channels.iter()).enumerate() {
        if h.state(now) != HealthState::Ok {
            w.obj()
                .key("channel")
                .str(&ch.id)
                .key("model")
                .null()
                .key("health");
            write_health(&mut w, h, now, wall);
            w.end_obj();
        }
        for (e, el) in snap.catalog.entries.iter().zip(live.entries.iter()) {
            if e.channel as usize == i && el.health.state(now) != HealthState::Ok {
                w.obj()
                    .key("channel")
                    .str(&ch.id)
                    .key("model")
                    .str(&e.model)
                    .key("health");
                write_health(&mut w, &el.health, now, wall);
                w.end_obj();
            }
        }
    }
    w.end_arr().end_obj();
    w
}

/// Epoch, generation, counts, build and propagation times, per-worker epochs, reloads.
fn snapshot(ctl: &Ctl) -> Writer {
    let st = ctl.st.borrow();
    let snap = &st.current;
    let now = Instant::now();
    let mut w = Writer::new();
    w.obj();
    w.key("epoch").uint(snap.epoch);
    w.key("generation").uint(snap.catalog.generation);
    w.key("channels").uint(snap.channels.len() as u64);
    w.key("channels_enabled")
        .uint(snap.channels.iter().filter(|c| c.enabled).count() as u64);
    w.key("entries").uint(snap.catalog.entries.len() as u64);
    let mut names: Vec<&str> = snap.catalog.entries.iter().map(|e| &*e.model).collect();
    names.sort_unstable();
    names.dedup();
    w.key("models").uint(names.len() as u64);
    w.key("build_ms").num(st.build_time.as_secs_f64() * 1000.0);
    match st.propagation {
        Some(p) => w.key("propagation_ms").num(p.as_secs_f64() * 1000.0),
        None => w.key("propagation_ms").null(),
    };
    w.key("publications").uint(st.publications);
    w.key("workers").arr();
    for (i, e) in ctl.board.epochs().iter().enumerate() {
        w.obj()
            .key("id")
            .uint(i as u64)
            .key("epoch")
            .uint(*e)
            .end_obj();
    }
    w.end_arr();
    w.key("uptime_s")
        .num(now.duration_since(ctl.started).as_secs_f64());
    w.key("config").str(&match &st.cfg.source {
        crate::config::Source::File(p) => format!("file {}", p.display()),
        crate::config::Source::Inline => "inline".into(),
        crate::config::Source::Environment(v) => format!("environment ({})", v.join(", ")),
        crate::config::Source::Demo => "demo".into(),
    });
    w.key("state_dir");
    match ctl.store.dir() {
        Some(d) => w.str(&d.display().to_string()),
        None => w.null(),
    };
    w.key("discovery")
        .obj()
        .key("enabled")
        .bool(st.cfg.discovery.enabled);
    w.key("running").bool(ctl.discovering.get());
    match st.next_discovery {
        Some(t) => w
            .key("next_in_s")
            .num(t.saturating_duration_since(now).as_secs_f64()),
        None => w.key("next_in_s").null(),
    };
    w.end_obj();
    w.key("health")
        .obj()
        .key("enabled")
        .bool(st.cfg.health.enabled);
    match st.next_probe {
        Some(t) => w
            .key("next_in_s")
            .num(t.saturating_duration_since(now).as_secs_f64()),
        None => w.key("next_in_s").null(),
    };
    w.end_obj();
    w.key("reloads")
        .obj()
        .key("applied")
        .uint(st.reloads.0)
        .key("rejected")
        .uint(st.reloads.1);
    w.key("last");
    match &st.last_reload {
        Some(r) => {
            w.obj()
                .key("at_unix")
                .num(unix(r.at))
                .key("ok")
                .bool(r.errors.is_empty());
            w.key("errors").arr();
            for e in &r.errors {
                w.str(e);
            }
            w.end_arr().end_obj();
        }
        None => {
            w.null();
        }
    }
    w.key("restart_required").arr();
    for r in &st.restart_required {
        w.str(r);
    }
    w.end_arr().end_obj();
    w.end_obj();
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {}

    #[test]
    fn priority_bodies() {
        assert_eq!(priority(br#"{"priority": 5}"#).unwrap(), 5);
        assert_eq!(priority(br#"{"priority": -3}"#).unwrap(), -3);
        assert!(priority(br#"{"priority": "high"}"#).is_err());
        assert!(priority(br#"{"priority": 1e12}"#).is_err());
        assert!(priority(b"not json").is_err());
    }
}
