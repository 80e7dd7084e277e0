//! A real-socket upstream simulator speaking three wire formats: OpenAI chat completions (JSON
//! or paced SSE, with a usage chunk when `stream_options.include_usage`), Anthropic Messages
//! (`POST …/messages`, see `anthropic.rs`) and Google Gemini (`POST …/models/{model}:generateContent`
//! and `:streamGenerateContent`, see `gemini.rs`); tool calls in each; OpenAI embeddings
//! (`POST …/embeddings`, honouring `x-mock-status`); `GET …/models`; latency;
//! and injected faults — a hostile upstream on demand. Used by demo mode, the tests, the
//! benches and `perf/`.
//!
//! Behaviour comes from [`MockConfig`], and per request from `x-mock-*` headers (which pass
//! through the gateway):
//! * `x-mock-status` (an error status; with `x-mock-retry-after`, 429s and 503s carry
//!   `Retry-After`, Gemini's a `RetryInfo` detail in the body), `x-mock-retry-after`;
//! * `x-mock-status-model: name=503[,other=500]` (also `MockConfig::model_status`): requests
//!   for those models answer that status, other models answer normally;
//! * `x-mock-fail-times: N` with `x-mock-fail-key: K` (also `MockConfig::fail_times`): the
//!   first N requests on counter K answer `x-mock-status` (default 503), later ones succeed;
//!   counters are per mock instance and shared by its threads, so parallel tests use distinct
//!   keys;
//! * `x-mock-missing-paths: /responses,/completions` (also `MockConfig::missing_paths`): POSTs
//!   to paths ending so answer 404 with a "no route" body that never names the model;
//! * `x-mock-latency-ms`, `x-mock-chunks`, `x-mock-interval-ms`, `x-mock-cut-after` (events:
//!   close without the end of the framing), `x-mock-hold-after` (events, until
//!   [`MockHandle::open_gate`]);
//! * `x-mock-fault`: `garbage` (a body or events that are not JSON), `truncate` (a close
//!   mid-body), `huge:N` (an N-byte answer), `no-done` (a stream whose framing ends cleanly
//!   without the format's terminator: no `data: [DONE]`, no `message_stop`, no `finishReason`),
//!   `truncated-json` (a non-streamed 200 with exact framing and half a JSON document);
//! * `x-mock-encoding: gzip | deflate | br`: every answer (whole, streamed, errors) sent with
//!   that `Content-Encoding` whatever `Accept-Encoding` says (`deflate` is zlib, as HTTP means
//!   it; `br` only labels the bytes, which the gateway must refuse anyway);
//! * `x-mock-ratelimit-reset` (answer with `x-ratelimit-remaining-requests: 0` and that reset),
//!   `x-mock-usage` (OpenAI format: `none` = no usage anywhere, whatever `include_usage` says,
//!   as some compatible providers do; `spaced` = the usage-only chunk written with spaces,
//!   `"choices": [ ]`), and for usage capture `x-mock-cached-tokens` (prompt tokens read from a
//!   cache: OpenAI `prompt_tokens_details.cached_tokens`, Anthropic `cache_read_input_tokens`,
//!   Gemini `cachedContentTokenCount`) and `x-mock-cache-write-tokens` (Anthropic
//!   `cache_creation_input_tokens`).
//!
//! Every knob applies to all three formats; event indices for `cut-after` / `hold-after` count
//! the format's own events (Anthropic's `message_start` is event 0). Connection-level faults
//! (`MockConfig::fault`, `close_delimited`, `drop_after_response`, `late_408`, `late_200`,
//! [`MockHandle::set_down`]) are configured per mock.
//!
//! Invariants: the mock never panics on input; every fault is deliberate and configured; each
//! format's errors come in that format's own shape. Prompt tokens are estimated the same way for
//! every format (body bytes / 4, at least 1, at least the cached + cache-write tokens asked for).
//! Not the data plane: it runs on its own threads (its one lock, the `fail-times` counters, is
//! held for a map update), and records requests for tests over an unbounded channel only when
//! asked to. Not a validator of everything a provider checks: only the basics each API rejects
//! (missing fields, wrong roles, bad auth).

mod anthropic;
mod ask;
mod coding;
mod exchange;
mod gemini;
mod openai;
mod schema;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use simd_json::prelude::*;

use crate::h1::chunked;
use crate::h1::head::Body;
use crate::json;
use crate::worker::runtime;

/// A deliberate connection-level fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reset every connection (RST) as soon as a chat request arrives.
    Reset,
}

/// The shape of the mock's model list (discovery must accept each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListFormat {
    /// OpenAI: `{"object":"list","data":[{"id":…}]}`.
    #[default]
    Data,
    /// OpenRouter: `data` entries with `context_length`, `pricing` (USD per token),
    /// `architecture.input_modalities` and `supported_parameters`.
    OpenRouter,
    /// A bare JSON array of model objects.
    Bare,
    /// Gemini / Ollama style: `{"models":[{"name":…}]}` (Gemini names carry `models/`).
    Models,
}

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Where to listen (port 0: ephemeral).
    pub listen: SocketAddr,
    /// Models listed and accepted (empty: accept any).
    pub models: Vec<String>,
    /// Delay before the response head.
    pub latency: Duration,
    /// Content events in a stream.
    pub chunks: usize,
    /// Delay between stream events.
    pub interval: Duration,
    /// Answer every chat request with this status (an OpenAI-shaped error).
    pub status: Option<u16>,
    /// `Retry-After` seconds sent with 429s.
    pub retry_after: Option<u32>,
    /// Connection fault.
    pub fault: Option<Fault>,
    /// Stream bodies close-delimited (HTTP/1.0 style) instead of chunked.
    pub close_delimited: bool,
    /// Close every connection right after answering while advertising keep-alive (what a
    /// provider's load balancer does to an idle pooled connection).
    pub drop_after_response: bool,
    /// 50 ms after each answer, send an unsolicited `408` and close (what some load balancers
    /// do to idle keep-alive connections).
    pub late_408: bool,
    /// 50 ms after each answer, send an unsolicited complete `200` and keep the connection
    /// open (a confused upstream: those bytes must never answer the next request).
    pub late_200: bool,
    /// TLS server config (https mock).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Record every connection and request on the events channel.
    pub record: bool,
    /// Event-loop threads.
    pub workers: usize,
    /// Shape of the `GET …/models` answer.
    pub list_format: ListFormat,
    /// When set, every request must carry this key (`Authorization: Bearer`, `x-api-key` or
    /// `api-key`), else it gets a 401 like a provider's.
    pub require_key: Option<String>,
    /// Path suffixes (`"/responses"`, `"/completions"`, `"/embeddings"`, even
    /// `"/chat/completions"`) this provider lacks: a POST to one answers 404 with a "no route"
    /// body that names the path, never the model (OpenAI's `Invalid URL (POST /v1/responses)`).
    pub missing_paths: Vec<String>,
    /// Per-model statuses: a chat request for the model answers that status (in the format's
    /// error shape; a 404 names the model, as a provider's does); other models answer normally.
    pub model_status: Vec<(String, u16)>,
    /// The first `fail_times` chat requests (per `x-mock-fail-key`; without one, on one shared
    /// counter) answer `status` (503 when unset) — with `retry_after` on a 429 or 503 —, every
    /// later one answers normally. 0: off, and `status` answers every request as usual.
    pub fail_times: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            models: Vec::new(),
            latency: Duration::ZERO,
            chunks: 8,
            interval: Duration::ZERO,
            status: None,
            retry_after: None,
            fault: None,
            close_delimited: false,
            drop_after_response: false,
            late_408: false,
            late_200: false,
            tls: None,
            record: false,
            workers: 1,
            list_format: ListFormat::Data,
            require_key: None,
            missing_paths: Vec::new(),
            model_status: Vec::new(),
            fail_times: 0,
        }
    }
}

/// Something the mock observed (for tests).
#[derive(Debug, Clone)]
pub enum MockEvent {
    /// A connection was accepted.
    Connected,
    /// A request arrived.
    Request(Recorded),
    /// A peer closed its connection while the mock was holding a stream at the gate.
    PeerClosedWhileHeld,
    /// A stream write failed (the peer went away mid-stream).
    StreamAborted,
}

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request method (`GET`, `POST` …).
    pub method: String,
    /// Request target.
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Recorded {
    /// A header value by (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The request path: the target without its query string.
    pub fn path(&self) -> &str {
        path_of(&self.target)
    }

    /// A query parameter's raw (not percent-decoded) value, e.g. Gemini's `alt` or `key`.
    pub fn query(&self, name: &str) -> Option<&str> {
        query_param(&self.target, name)
    }

    /// The body parsed as JSON (`None` when it is not JSON).
    pub fn json(&self) -> Option<simd_json::OwnedValue> {
        let mut copy = self.body.clone();
        simd_json::to_owned_value(&mut copy).ok()
    }
}

/// The path part of a request target.
fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or("")
}

/// The raw value of query parameter `name` in `target` (the first one, if repeated).
fn query_param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// A running mock.
#[derive(Debug)]
pub struct MockHandle {
    addr: SocketAddr,
    events: Receiver<MockEvent>,
    gate: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl MockHandle {
    /// While down, every connection is closed as soon as it is accepted (a provider outage).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// What the mock observed.
    pub fn events(&self) -> &Receiver<MockEvent> {
        &self.events
    }
    /// Releases every stream held by `x-mock-hold-after`.
    pub fn open_gate(&self) {
        self.gate.store(true, Ordering::SeqCst);
    }
    /// Chat requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

struct Shared {
    cfg: MockConfig,
    down: Arc<AtomicBool>,
    events: Sender<MockEvent>,
    gate: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    seq: AtomicU64,
    /// `fail-times` counters by `x-mock-fail-key`, shared by the mock's threads. The mock is
    /// not the data plane: a lock held for one map update cannot stall a gateway worker.
    #[allow(clippy::disallowed_types)]
    failed: std::sync::Mutex<HashMap<String, u64>>,
}

impl Shared {
    /// Counts one request on counter `key`; true while it is among the first `times`.
    fn fails(&self, key: &str, times: u64) -> bool {
        // A poisoned lock (a panic elsewhere in the mock) still holds valid counts.
        let mut counts = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if !counts.contains_key(key) && counts.len() >= MAX_FAIL_KEYS {
            // Bounded: a test that invents keys without end cannot grow the mock forever.
            counts.clear();
        }
        let seen = counts.entry(key.to_string()).or_insert(0);
        *seen = seen.saturating_add(1);
        *seen <= times
    }

    /// Records an event, only when `record` is set: the channel is unbounded, and the CLI mock
    /// and demo mode never drain it (a long benchmark would grow it by one per connection).
    fn note(&self, event: MockEvent) {
        if self.cfg.record {
            let _ = self.events.send(event);
        }
    }
}

/// The most `x-mock-fail-key` counters kept at once.
const MAX_FAIL_KEYS: usize = 4096;

/// Starts the mock on its own threads and returns once it listens.
pub fn start(cfg: MockConfig) -> std::io::Result<MockHandle> {
    let listeners = crate::worker::listener::bind(cfg.listen, cfg.workers.max(1))
        .map_err(std::io::Error::other)?;
    if cfg.fault == Some(Fault::Reset) {
        for l in &listeners {
            // Accepted sockets inherit SO_LINGER: closing them sends RST.
            socket2::SockRef::from(l).set_linger(Some(Duration::ZERO))?;
        }
    }
    let addr = listeners[0].local_addr()?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let gate = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        cfg,
        down: down.clone(),
        events: tx,
        gate: gate.clone(),
        requests: requests.clone(),
        seq: AtomicU64::new(1),
        failed: Default::default(),
    });
    let driver =
        runtime::choose(crate::config::DriverChoice::Auto).map_err(std::io::Error::other)?;
    for (i, l) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let driver = driver.clone();
        std::thread::Builder::new()
            .name(format!("sar-mock-{i}"))
            .spawn(move || {
                let _ = runtime::block_on(&driver, accept_loop(l, shared));
            })?;
    }
    Ok(MockHandle {
        addr,
        events: rx,
        gate,
        requests,
        down,
    })
}

async fn accept_loop(l: std::net::TcpListener, shared: Arc<Shared>) {
    let Ok(listener) = monoio::net::TcpListener::from_std(l) else {
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            monoio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        if shared.down.load(Ordering::SeqCst) {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        shared.note(MockEvent::Connected);
        monoio::spawn(async move {
            match shared.cfg.tls.clone() {
                None => serve(stream, &shared).await,
                Some(tls) => {
                    let acceptor = monoio_rustls::TlsAcceptor::from(tls);
                    if let Ok(s) = acceptor.accept(stream).await {
                        serve(s, &shared).await;
                    }
                }
            }
        });
    }
}

struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// The OpenAI-compatible ways to send a key (`AuthStyle`): bearer, `x-api-key`, `api-key`.
    fn carries_key(&self, key: &str) -> bool {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| self.header("x-api-key"))
            .or_else(|| self.header("api-key"))
            .is_some_and(|k| k == key)
    }
    /// Any way any supported provider sends a key; for the paths shared by every format
    /// (model lists), which discovery calls with each provider's own header.
    fn carries_any_key(&self, key: &str) -> bool {
        self.carries_key(key) || gemini::key_of(self) == Some(key)
    }
    fn header_num(&self, name: &str) -> Option<u64> {
        self.header(name).and_then(|v| v.trim().parse().ok())
    }
}

async fn read_request<S: AsyncReadRent>(s: &mut S, buf: &mut Vec<u8>) -> Option<Req> {
    let head = crate::h1::read_request_head(s, buf, 256, 1 << 20)
        .await
        .ok()?;
    let mut body = Vec::new();
    let consumed = match head.body {
        Body::None | Body::Close => head.len,
        Body::Length(n) => {
            let end = head.len + n as usize;
            crate::h1::read_body(s, buf, end).await.ok()?;
            body.extend_from_slice(&buf[head.len..end]);
            end
        }
        Body::Chunked => {
            let mut d = chunked::Decoder::new();
            let mut pos = head.len;
            loop {
                pos += d.decode(&buf[pos..], &mut body).ok()?;
                if d.is_done() {
                    break pos;
                }
                match crate::h1::read_into(s, buf).await {
                    Ok(k) if k > 0 => {}
                    _ => return None,
                }
            }
        }
    };
    let text = |r: std::ops::Range<usize>| String::from_utf8_lossy(&buf[r]).into_owned();
    let req = Req {
        method: text(head.method_text.clone()),
        target: text(head.target.clone()),
        headers: head
            .headers
            .iter()
            .map(|h| {
                (
                    text(h.name.clone()).to_ascii_lowercase(),
                    text(h.value.clone()),
                )
            })
            .collect(),
        body,
        keep_alive: head.keep_alive,
    };
    buf.drain(..consumed);
    Some(req)
}

async fn serve<S: AsyncReadRent + AsyncWriteRent>(mut s: S, shared: &Shared) {
    let mut buf = Vec::with_capacity(8192);
    while let Some(req) = read_request(&mut s, &mut buf).await {
        if shared.cfg.record {
            let _ = shared.events.send(MockEvent::Request(Recorded {
                method: req.method.clone(),
                target: req.target.clone(),
                headers: req.headers.clone(),
                body: req.body.clone(),
            }));
        }
        let path = path_of(&req.target);
        let keep = req.keep_alive;
        let wire = if req.method == "POST" {
            Wire::of(&req.target)
        } else {
            None
        };
        let ok = if req.method == "POST"
            && let Some((status, body)) = no_route(&req, &shared.cfg)
        {
            if wire.is_some() {
                shared.requests.fetch_add(1, Ordering::SeqCst);
            }
            let enc = req.header("x-mock-encoding").and_then(ask::Encoding::parse);
            exchange::reply(&mut s, status, Vec::new(), &body, keep, enc).await
        } else if let Some(wire) = wire {
            shared.requests.fetch_add(1, Ordering::SeqCst);
            if let Some((status, body)) = wire.refuse(&req, shared.cfg.require_key.as_deref()) {
                write_simple(&mut s, status, &[], &body, keep).await
            } else if shared.cfg.fault == Some(Fault::Reset) {
                return; // dropped with SO_LINGER 0: RST
            } else {
                exchange::chat(&mut s, &req, shared, &mut buf, &wire).await
            }
        } else if let Some(want) = &shared.cfg.require_key
            && !req.carries_any_key(want)
        {
            if req.method == "POST" {
                shared.requests.fetch_add(1, Ordering::SeqCst);
            }
            let body = error_json(401, "Incorrect API key provided");
            write_simple(&mut s, 401, &[], &body, keep).await
        } else if req.method == "POST" && path.ends_with("/embeddings") {
            shared.requests.fetch_add(1, Ordering::SeqCst);
            let (status, body) = match req.header_num("x-mock-status").filter(|s| *s >= 400) {
                Some(status) => (
                    status as u16,
                    error_json(status as u16, "mock embeddings error"),
                ),
                None => openai::embeddings_json(&req.body),
            };
            write_simple(&mut s, status, &[], &body, keep).await
        } else if req.method == "GET" && (path.ends_with("/models") || path.ends_with("/api/tags"))
        {
            let body = models_json(&shared.cfg.models, shared.cfg.list_format);
            write_simple(&mut s, 200, &[], &body, keep).await
        } else {
            let body = error_json(404, "unknown path on the mock upstream");
            write_simple(&mut s, 404, &[], &body, keep).await
        };
        if !ok || !keep || shared.cfg.drop_after_response {
            return;
        }
        if shared.cfg.late_200 {
            monoio::time::sleep(Duration::from_millis(50)).await;
            let stray = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"stray\":true}";
            if s.write_all(stray.as_slice()).await.0.is_err() {
                return;
            }
        }
        if shared.cfg.late_408 {
            monoio::time::sleep(Duration::from_millis(50)).await;
            let stray =
                b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            let _ = s.write_all(stray.as_slice()).await;
            return;
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn models_json(models: &[String], format: ListFormat) -> Vec<u8> {
    let mut b = match format {
        ListFormat::Data | ListFormat::OpenRouter => b"{\"object\":\"list\",\"data\":[".to_vec(),
        ListFormat::Bare => b"[".to_vec(),
        ListFormat::Models => b"{\"models\":[".to_vec(),
    };
    for (i, m) in models.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        match format {
            ListFormat::Data | ListFormat::Bare => {
                b.extend_from_slice(b"{\"id\":");
                json::write_str(&mut b, m);
                b.extend_from_slice(
                    b",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"mock\"}",
                );
            }
            ListFormat::OpenRouter => {
                // The same figures for every model: 128k context, $1 / $2 per 1M tokens,
                // text + image input, tools.
                b.extend_from_slice(b"{\"id\":");
                json::write_str(&mut b, m);
                b.extend_from_slice(
                    b",\"context_length\":131072,\"top_provider\":{\"max_completion_tokens\":16384},\
                      \"pricing\":{\"prompt\":\"0.000001\",\"completion\":\"0.000002\"},\
                      \"architecture\":{\"input_modalities\":[\"text\",\"image\"]},\
                      \"supported_parameters\":[\"tools\",\"response_format\"]}",
                );
            }
            ListFormat::Models => {
                b.extend_from_slice(b"{\"name\":");
                json::write_str(&mut b, &format!("models/{m}"));
                b.extend_from_slice(b",\"inputTokenLimit\":32768,\"outputTokenLimit\":8192}");
            }
        }
    }
    b.extend_from_slice(if format == ListFormat::Bare {
        b"]"
    } else {
        b"]}"
    });
    b
}

/// The 404 a provider gives a path it does not serve, when the request's path ends with one of
/// `cfg.missing_paths` or of `x-mock-missing-paths` (comma-separated suffixes). In the shape of
/// the family the request speaks (by its path, else by its auth headers); never naming the
/// model, which is what tells a missing endpoint from a missing model.
fn no_route(req: &Req, cfg: &MockConfig) -> Option<(u16, Vec<u8>)> {
    let path = path_of(&req.target);
    let listed = |suffix: &str| {
        let suffix = suffix.trim();
        !suffix.is_empty() && path.ends_with(suffix)
    };
    let missing = cfg.missing_paths.iter().any(|p| listed(p))
        || req
            .header("x-mock-missing-paths")
            .is_some_and(|v| v.split(',').any(listed));
    if !missing {
        return None;
    }
    let body = match Wire::of(&req.target) {
        Some(Wire::Anthropic) => anthropic::error_json(404, "Not Found"),
        Some(Wire::Gemini(_)) => gemini::error_json(404, "Method not found.", None),
        _ if req.header("anthropic-version").is_some() => anthropic::error_json(404, "Not Found"),
        _ if gemini::key_of(req).is_some() => gemini::error_json(404, "Method not found.", None),
        _ => {
            let mut b = b"{\"error\":{\"message\":".to_vec();
            json::write_str(&mut b, &format!("Invalid URL (POST {path})"));
            b.extend_from_slice(
                b",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}",
            );
            b
        }
    };
    Some((404, body))
}

fn error_json(status: u16, msg: &str) -> Vec<u8> {
    let kind = match status {
        401 => crate::error::Kind::Authentication,
        403 => crate::error::Kind::Permission,
        429 => crate::error::Kind::RateLimit,
        s if s >= 500 => crate::error::Kind::Server,
        _ => crate::error::Kind::InvalidRequest,
    };
    crate::error::Error::new(status, kind, "mock_error", msg.to_string()).body()
}

async fn write_simple<S: AsyncWriteRent>(
    s: &mut S,
    status: u16,
    extra: &[(&str, String)],
    body: &[u8],
    keep: bool,
) -> bool {
    let mut out = Vec::with_capacity(body.len() + 200);
    crate::h1::write_status_line(&mut out, status);
    crate::h1::write_header(&mut out, b"content-type", b"application/json");
    crate::h1::write_header(
        &mut out,
        b"content-length",
        itoa::Buffer::new().format(body.len()).as_bytes(),
    );
    crate::h1::write_header(&mut out, b"x-request-id", b"mock-upstream-id");
    for (k, v) in extra {
        crate::h1::write_header(&mut out, k.as_bytes(), v.as_bytes());
    }
    if !keep {
        crate::h1::write_header(&mut out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    s.write_all(out).await.0.is_ok()
}

/// The wire format of a chat request, from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wire {
    /// `POST …/chat/completions`.
    OpenAi,
    /// `POST …/messages`.
    Anthropic,
    /// `POST …/models/{model}:generateContent` or `:streamGenerateContent`.
    Gemini(gemini::Call),
    /// `POST …/responses` (the OpenAI Responses API, for providers that serve it).
    Responses,
}

impl Wire {
    /// The chat format `target` asks for; `None` for every other path.
    fn of(target: &str) -> Option<Wire> {
        let path = path_of(target);
        if path.ends_with("/chat/completions") {
            Some(Wire::OpenAi)
        } else if path.ends_with("/messages") {
            Some(Wire::Anthropic)
        } else if path.ends_with("/responses") {
            Some(Wire::Responses)
        } else {
            gemini::Call::of(target).map(Wire::Gemini)
        }
    }

    /// The answer to a request this format's API refuses before reading its body (auth and
    /// required headers), or `None` to go on.
    fn refuse(&self, req: &Req, want_key: Option<&str>) -> Option<(u16, Vec<u8>)> {
        match self {
            Wire::OpenAi | Wire::Responses => want_key
                .filter(|k| !req.carries_key(k))
                .map(|_| (401, error_json(401, "Incorrect API key provided"))),
            Wire::Anthropic => anthropic::refuse(
                req.header("x-api-key"),
                req.header("anthropic-version"),
                want_key,
            ),
            Wire::Gemini(_) => gemini::refuse(gemini::key_of(req), want_key),
        }
    }

    /// An error body in this format's shape.
    fn error(&self, status: u16, msg: &str) -> Vec<u8> {
        match self {
            Wire::OpenAi | Wire::Responses => error_json(status, msg),
            Wire::Anthropic => anthropic::error_json(status, msg),
            Wire::Gemini(_) => gemini::error_json(status, msg, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ask::*;
    use super::openai::*;
    use super::*;

    fn json_of(bytes: &[u8]) -> simd_json::OwnedValue {
        let mut b = bytes.to_vec();
        simd_json::to_owned_value(&mut b).unwrap()
    }

    #[test]
    fn wire_follows_the_path() {
        assert_eq!(Wire::of("/v1/chat/completions"), Some(Wire::OpenAi));
        assert_eq!(Wire::of("/v1/messages"), Some(Wire::Anthropic));
        assert_eq!(
            Wire::of("/anthropic/v1/messages?beta=true"),
            Some(Wire::Anthropic)
        );
        assert!(matches!(
            Wire::of("/v1beta/models/g:streamGenerateContent?alt=sse"),
            Some(Wire::Gemini(gemini::Call {
                stream: true,
                sse: true,
                ..
            }))
        ));
        assert_eq!(Wire::of("/v1/messages/count_tokens"), None);
        assert_eq!(Wire::of("/v1/models"), None);
        assert_eq!(Wire::of("/v1/completions"), None);
    }

    #[test]
    fn query_params_are_found_by_name() {
        assert_eq!(query_param("/p?alt=sse&key=abc", "key"), Some("abc"));
        assert_eq!(query_param("/p?alt=sse&key=abc", "alt"), Some("sse"));
        assert_eq!(query_param("/p?flag&key=", "flag"), Some(""));
        assert_eq!(query_param("/p?keys=1", "key"), None);
        assert_eq!(query_param("/p", "key"), None);
        assert_eq!(path_of("/p?x=1"), "/p");
    }

    #[test]
    fn models_match_with_or_without_the_gemini_prefix() {
        let cfg = MockConfig {
            models: vec!["gemini-2.0-flash".into(), "models/other".into()],
            ..MockConfig::default()
        };
        assert!(serves(&cfg, "gemini-2.0-flash"));
        assert!(serves(&cfg, "models/gemini-2.0-flash"));
        assert!(serves(&cfg, "other"));
        assert!(!serves(&cfg, "gpt-4o"));
        assert!(serves(&MockConfig::default(), "anything"));
    }

    #[test]
    fn cache_knobs_grow_the_prompt_to_hold_them() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let a = parse_ask(body).unwrap();
        assert_eq!(a.prompt_tokens, body.len() as u64 / 4);
        let a = a.with_cache(Some(100), 20);
        assert_eq!(a.prompt_tokens, 120);
        let a = parse_ask(body).unwrap().with_cache(Some(1), 0);
        assert_eq!(a.prompt_tokens, body.len() as u64 / 4);
    }

    #[test]
    fn openai_usage_reports_cached_tokens_only_when_asked() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
        let plain = parse_ask(body).unwrap();
        let v = json_of(&completion_json(&plain, 1, 3));
        assert!(v["usage"].get("prompt_tokens_details").is_none());
        let cached = parse_ask(body).unwrap().with_cache(Some(4), 0);
        let v = json_of(&completion_json(&cached, 1, 3));
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(v["usage"]["completion_tokens"], 3);
        // The streamed usage chunk carries it too.
        let events = stream_events(&cached, 1, 3);
        let usage_chunk = events
            .len()
            .checked_sub(2)
            .and_then(|i| events.get(i))
            .and_then(|e| std::str::from_utf8(e).ok())
            .and_then(|t| t.strip_prefix("data: "))
            .unwrap();
        let v = json_of(usage_chunk.trim_end().as_bytes());
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    }

    fn req(target: &str, headers: &[(&str, &str)]) -> Req {
        Req {
            method: "POST".into(),
            target: target.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            keep_alive: true,
        }
    }

    fn shared(cfg: MockConfig) -> Shared {
        let (tx, _) = crossbeam_channel::unbounded();
        Shared {
            cfg,
            down: Default::default(),
            events: tx,
            gate: Default::default(),
            requests: Default::default(),
            seq: AtomicU64::new(1),
            failed: Default::default(),
        }
    }

    #[test]
    fn missing_paths_answer_a_no_route_404_that_never_names_the_model() {
        let cfg = MockConfig {
            missing_paths: vec!["/responses".into()],
            ..MockConfig::default()
        };
        let (status, body) = no_route(&req("/v1/responses", &[]), &cfg).unwrap();
        assert_eq!(status, 404);
        let v = json_of(&body);
        assert_eq!(v["error"]["message"], "Invalid URL (POST /v1/responses)");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["code"].is_null() && v["error"]["param"].is_null());
        assert!(no_route(&req("/v1/chat/completions", &[]), &cfg).is_none());
        // The header form, several suffixes, each family's own shape.
        let h = [(
            "x-mock-missing-paths",
            "/completions, /messages,/models/g:generateContent",
        )];
        let cfg = MockConfig::default();
        let (_, body) = no_route(&req("/v1/chat/completions", &h), &cfg).unwrap();
        assert_eq!(
            json_of(&body)["error"]["message"],
            "Invalid URL (POST /v1/chat/completions)"
        );
        let (_, body) = no_route(&req("/v1/messages", &h), &cfg).unwrap();
        let v = json_of(&body);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "not_found_error");
        let (_, body) = no_route(&req("/v1beta/models/g:generateContent?key=k", &h), &cfg).unwrap();
        let v = json_of(&body);
        assert_eq!(v["error"]["status"], "NOT_FOUND");
        assert!(
            !String::from_utf8_lossy(&body).contains("\"g"),
            "no model in {v:?}"
        );
        assert!(no_route(&req("/v1/embeddings", &h), &cfg).is_none());
        // A non-chat path speaks the family its auth headers say.
        let h = [
            ("x-mock-missing-paths", "/embeddings"),
            ("anthropic-version", "2023-06-01"),
        ];
        let (_, body) = no_route(&req("/v1/embeddings", &h), &cfg).unwrap();
        assert_eq!(json_of(&body)["error"]["type"], "not_found_error");
    }

    #[test]
    fn fail_times_counts_per_key_then_lets_requests_through() {
        let s = shared(MockConfig::default());
        assert!(s.fails("a", 2));
        assert!(s.fails("b", 1), "keys count apart");
        assert!(s.fails("a", 2));
        assert!(!s.fails("a", 2), "the third request on `a` succeeds");
        assert!(!s.fails("b", 1));
        assert!(!s.fails("a", 2));
        assert!(s.fails("", 1) && !s.fails("", 1));
    }

    #[test]
    fn hostile_knobs_are_read_from_headers_over_the_config() {
        let cfg = MockConfig {
            model_status: vec![("bad-model".into(), 503)],
            fail_times: 3,
            ..MockConfig::default()
        };
        let k = Knobs::read(&req("/v1/chat/completions", &[]), &cfg);
        assert_eq!(k.fail_times, 3);
        assert_eq!(k.status_for("bad-model"), Some(503));
        assert_eq!(k.status_for("models/bad-model"), Some(503));
        assert_eq!(k.status_for("good-model"), None);
        assert_eq!(k.encoding, None);
        let h = [
            ("x-mock-status-model", "x=500, y=a=429,broken,z=99"),
            ("x-mock-fail-times", "2"),
            ("x-mock-fail-key", "t1"),
            ("x-mock-encoding", "gzip"),
            ("x-mock-fault", "no-done"),
        ];
        let k = Knobs::read(&req("/v1/chat/completions", &h), &cfg);
        assert_eq!(
            k.model_status,
            vec![("x".to_string(), 500), ("y=a".into(), 429)]
        );
        assert_eq!(
            k.status_for("bad-model"),
            None,
            "the header replaces the list"
        );
        assert_eq!((k.fail_times, k.fail_key.as_str()), (2, "t1"));
        assert_eq!(k.encoding, Some(Encoding::Gzip));
        assert_eq!(k.fault, Some(BodyFault::NoDone));
        assert_eq!(
            BodyFault::parse("truncated-json"),
            Some(BodyFault::TruncatedJson)
        );
        assert_eq!(BodyFault::parse("no-such-fault"), None);
    }

    #[test]
    fn an_unfinished_gemini_stream_has_no_finish_reason() {
        let call = gemini::Call {
            model: "g".into(),
            stream: true,
            sse: true,
        };
        let a = gemini::parse(br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#, &call).unwrap();
        for sse in [true, false] {
            let done = gemini::stream_events(&a, 1, 3, sse, true).concat();
            let cut = gemini::stream_events(&a, 1, 3, sse, false).concat();
            assert!(find(&done, b"finishReason").is_some());
            assert!(find(&cut, b"finishReason").is_none(), "sse {sse}");
            assert!(find(&cut, b"usageMetadata").is_none(), "sse {sse}");
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        memchr::memmem::find(hay, needle)
    }

    #[test]
    fn text_pieces_respect_the_output_cap() {
        let mut a = Ask {
            model: "m".into(),
            ..Ask::default()
        };
        assert_eq!(a.text_pieces(5), (words(&a, 5), false));
        a.max_tokens = Some(2);
        let (w, capped) = a.text_pieces(5);
        assert_eq!((w.len(), capped), (2, true));
        a.max_tokens = Some(5);
        assert!(!a.text_pieces(5).1);
    }
}
