//! A real OpenAI-compatible upstream simulator on real sockets: chat completions as JSON or paced
//! SSE (with a usage chunk when `stream_options.include_usage`), tool calls, `/v1/models`,
//! latency, and injected faults (status codes, 429 with `Retry-After`, connection reset,
//! mid-stream cut, a gate that holds a stream until released). Used by demo mode, the tests,
//! the benches and `perf/`.
//!
//! Behaviour comes from [`MockConfig`], and per request from `x-mock-*` headers (which pass
//! through the gateway): `x-mock-status`, `x-mock-latency-ms`, `x-mock-chunks`,
//! `x-mock-interval-ms`, `x-mock-cut-after` (events), `x-mock-retry-after`, `x-mock-hold-after`
//! (events, until [`MockHandle::open_gate`]).
//!
//! Invariants: the mock never panics on input; every fault is deliberate and configured.
//! Not the data plane: it runs on its own threads, and records requests for tests over an
//! unbounded channel only when asked to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use simd_json::prelude::*;

use crate::h1::chunked;
use crate::h1::head::{Body, RequestHead};
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
    /// Record every request on the events channel.
    pub record: bool,
    /// Event-loop threads.
    pub workers: usize,
    /// Shape of the `GET …/models` answer.
    pub list_format: ListFormat,
    /// When set, every request must carry this key (`Authorization: Bearer`, `x-api-key` or
    /// `api-key`), else it gets a 401 like a provider's.
    pub require_key: Option<String>,
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
    /// Method.
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
}

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
        let _ = shared.events.send(MockEvent::Connected);
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
    fn carries_key(&self, key: &str) -> bool {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| self.header("x-api-key"))
            .or_else(|| self.header("api-key"))
            .is_some_and(|k| k == key)
    }
    fn header_num(&self, name: &str) -> Option<u64> {
        self.header(name).and_then(|v| v.trim().parse().ok())
    }
}

async fn read_request<S: AsyncReadRent>(s: &mut S, buf: &mut Vec<u8>) -> Option<Req> {
    let head = loop {
        match RequestHead::parse(buf, 256, 1 << 20) {
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(_) => return None,
        }
        match crate::server::read_into(s, buf).await {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
    };
    let mut body = Vec::new();
    let consumed = match head.body {
        Body::None | Body::Close => head.len,
        Body::Length(n) => {
            let end = head.len + n as usize;
            while buf.len() < end {
                match crate::server::read_into(s, buf).await {
                    Ok(k) if k > 0 => {}
                    _ => return None,
                }
            }
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
                match crate::server::read_into(s, buf).await {
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
        let path = req.target.split('?').next().unwrap_or("");
        let keep = req.keep_alive;
        let ok = if let Some(want) = &shared.cfg.require_key
            && !req.carries_key(want)
        {
            if req.method == "POST" {
                shared.requests.fetch_add(1, Ordering::SeqCst);
            }
            let body = error_json(401, "Incorrect API key provided");
            write_simple(&mut s, 401, &[], &body, keep).await
        } else if req.method == "GET" && (path.ends_with("/models") || path.ends_with("/api/tags"))
        {
            let body = models_json(&shared.cfg.models, shared.cfg.list_format);
            write_simple(&mut s, 200, &[], &body, keep).await
        } else if req.method == "POST" && path.ends_with("/chat/completions") {
            shared.requests.fetch_add(1, Ordering::SeqCst);
            if shared.cfg.fault == Some(Fault::Reset) {
                return; // dropped with SO_LINGER 0: RST
            }
            chat(&mut s, &req, shared, &mut buf).await
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

/// What a chat request asked for.
struct Ask {
    model: String,
    stream: bool,
    include_usage: bool,
    tool: Option<String>,
    last_user: String,
    prompt_tokens: u64,
}

fn parse_ask(body: &[u8]) -> Result<Ask, String> {
    let mut copy = body.to_vec();
    let v = simd_json::to_owned_value(&mut copy).map_err(|e| format!("invalid JSON: {e}"))?;
    let model = v
        .get("model")
        .and_then(|m| m.as_str())
        .ok_or("missing model")?
        .to_string();
    let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    let include_usage = v
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(|u| u.as_bool())
        .unwrap_or(false);
    let messages = v.get("messages").and_then(|m| m.as_array());
    let last_is_tool = messages
        .and_then(|m| m.last())
        .and_then(|m| m.get("role"))
        .and_then(|r| r.as_str())
        == Some("tool");
    let tool = if last_is_tool {
        None
    } else {
        v.get("tools")
            .and_then(|t| t.as_array())
            .and_then(|t| t.first())
            .and_then(|t| t.get("function"))
            .and_then(|f| f.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
    };
    let last_user = messages
        .and_then(|m| {
            m.iter()
                .filter(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
                .last()
        })
        .and_then(|m| m.get("content"))
        .and_then(|c| c.as_str())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    Ok(Ask {
        model,
        stream,
        include_usage,
        tool,
        last_user,
        prompt_tokens: (body.len() as u64 / 4).max(1),
    })
}

async fn chat<S: AsyncReadRent + AsyncWriteRent>(
    s: &mut S,
    req: &Req,
    shared: &Shared,
    buf: &mut Vec<u8>,
) -> bool {
    let cfg = &shared.cfg;
    let keep = req.keep_alive;
    let latency = req
        .header_num("x-mock-latency-ms")
        .map(Duration::from_millis)
        .unwrap_or(cfg.latency);
    if !latency.is_zero() && !wait_unless_peer_closes(s, buf, latency, None).await {
        let _ = shared.events.send(MockEvent::PeerClosedWhileHeld);
        return false;
    }
    let status = req
        .header_num("x-mock-status")
        .map(|n| n as u16)
        .or(cfg.status);
    if let Some(st) = status.filter(|s| *s != 200) {
        let mut extra = Vec::new();
        let retry = req
            .header_num("x-mock-retry-after")
            .map(|n| n as u32)
            .or(cfg.retry_after);
        if let (429, Some(r)) = (st, retry) {
            extra.push(("retry-after", r.to_string()));
        }
        let body = error_json(st, &format!("mock upstream injected status {st}"));
        return write_simple(s, st, &extra, &body, keep).await;
    }
    let ask = match parse_ask(&req.body) {
        Ok(a) => a,
        Err(m) => return write_simple(s, 400, &[], &error_json(400, &m), keep).await,
    };
    if !cfg.models.is_empty() && !cfg.models.iter().any(|m| *m == ask.model) {
        let body = error_json(404, &format!("The model `{}` does not exist", ask.model));
        return write_simple(s, 404, &[], &body, keep).await;
    }
    let id = shared.seq.fetch_add(1, Ordering::Relaxed);
    if !ask.stream {
        let body = completion_json(&ask, id, cfg.chunks);
        return write_simple(s, 200, &[], &body, keep).await;
    }
    let chunks = req
        .header_num("x-mock-chunks")
        .map_or(cfg.chunks, |n| n as usize);
    let interval = req
        .header_num("x-mock-interval-ms")
        .map(Duration::from_millis)
        .unwrap_or(cfg.interval);
    let cut_after = req.header_num("x-mock-cut-after").map(|n| n as usize);
    let hold_after = req.header_num("x-mock-hold-after").map(|n| n as usize);
    stream(
        s, &ask, id, chunks, interval, cut_after, hold_after, shared, buf,
    )
    .await
}

fn words(ask: &Ask, n: usize) -> Vec<String> {
    let base = format!(
        "Hello from the smart-ai-router mock upstream ({}). You said: {}",
        ask.model, ask.last_user
    );
    let mut words: Vec<String> = base.split(' ').map(|w| format!("{w} ")).collect();
    while words.len() < n {
        words.push("lorem ".into());
    }
    words.truncate(n.max(1));
    words
}

fn completion_json(ask: &Ask, id: u64, n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(512);
    b.extend_from_slice(b"{\"id\":\"chatcmpl-mock-");
    json::write_u64(&mut b, id);
    b.extend_from_slice(b"\",\"object\":\"chat.completion\",\"created\":");
    json::write_u64(&mut b, now_secs());
    b.extend_from_slice(b",\"model\":");
    json::write_str(&mut b, &ask.model);
    b.extend_from_slice(b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",");
    let completion_tokens = match &ask.tool {
        Some(tool) => {
            b.extend_from_slice(b"\"content\":null,\"tool_calls\":[{\"id\":\"call_mock_1\",\"type\":\"function\",\"function\":{\"name\":");
            json::write_str(&mut b, tool);
            b.extend_from_slice(b",\"arguments\":\"{\\\"location\\\": \\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]");
            8
        }
        None => {
            let text: String = words(ask, n).concat();
            b.extend_from_slice(b"\"content\":");
            json::write_str(&mut b, text.trim_end());
            b.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":\"stop\"}]");
            n as u64
        }
    };
    write_usage(&mut b, ask.prompt_tokens, completion_tokens);
    b.push(b'}');
    b
}

fn write_usage(b: &mut Vec<u8>, prompt: u64, completion: u64) {
    b.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
    json::write_u64(b, prompt);
    b.extend_from_slice(b",\"completion_tokens\":");
    json::write_u64(b, completion);
    b.extend_from_slice(b",\"total_tokens\":");
    json::write_u64(b, prompt + completion);
    b.push(b'}');
}

fn chunk_event(
    ask: &Ask,
    id: u64,
    created: u64,
    choices: &[u8],
    usage: Option<(u64, u64)>,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(b"data: {\"id\":\"chatcmpl-mock-");
    json::write_u64(&mut b, id);
    b.extend_from_slice(b"\",\"object\":\"chat.completion.chunk\",\"created\":");
    json::write_u64(&mut b, created);
    b.extend_from_slice(b",\"model\":");
    json::write_str(&mut b, &ask.model);
    b.extend_from_slice(b",\"choices\":");
    b.extend_from_slice(choices);
    if let Some((p, c)) = usage {
        write_usage(&mut b, p, c);
    }
    b.extend_from_slice(b"}\n\n");
    b
}

fn stream_events(ask: &Ask, id: u64, n: usize) -> Vec<Vec<u8>> {
    let created = now_secs();
    let mut ev = Vec::new();
    ev.push(chunk_event(
        ask,
        id,
        created,
        br#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
        None,
    ));
    let finish: &[u8];
    let completion;
    match &ask.tool {
        Some(tool) => {
            let mut c = br#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_mock_1","type":"function","function":{"name":"#.to_vec();
            json::write_str(&mut c, tool);
            c.extend_from_slice(br#","arguments":""}}]},"logprobs":null,"finish_reason":null}]"#);
            ev.push(chunk_event(ask, id, created, &c, None));
            for part in ["{\"location\"", ": \"Paris\"}"] {
                let mut c =
                    br#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"#
                        .to_vec();
                json::write_str(&mut c, part);
                c.extend_from_slice(br#"}}]},"logprobs":null,"finish_reason":null}]"#);
                ev.push(chunk_event(ask, id, created, &c, None));
            }
            finish = br#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]"#;
            completion = 8;
        }
        None => {
            for w in words(ask, n) {
                let mut c = br#"[{"index":0,"delta":{"content":"#.to_vec();
                json::write_str(&mut c, &w);
                c.extend_from_slice(br#"},"logprobs":null,"finish_reason":null}]"#);
                ev.push(chunk_event(ask, id, created, &c, None));
            }
            finish = br#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#;
            completion = n as u64;
        }
    }
    ev.push(chunk_event(ask, id, created, finish, None));
    if ask.include_usage {
        ev.push(chunk_event(
            ask,
            id,
            created,
            b"[]",
            Some((ask.prompt_tokens, completion)),
        ));
    }
    ev.push(b"data: [DONE]\n\n".to_vec());
    ev
}

#[allow(clippy::too_many_arguments)]
async fn stream<S: AsyncReadRent + AsyncWriteRent>(
    s: &mut S,
    ask: &Ask,
    id: u64,
    chunks: usize,
    interval: Duration,
    cut_after: Option<usize>,
    hold_after: Option<usize>,
    shared: &Shared,
    buf: &mut Vec<u8>,
) -> bool {
    let chunked_framing = !shared.cfg.close_delimited;
    let mut head = Vec::with_capacity(200);
    crate::h1::write_status_line(&mut head, 200);
    crate::h1::write_header(
        &mut head,
        b"content-type",
        b"text/event-stream; charset=utf-8",
    );
    crate::h1::write_header(&mut head, b"cache-control", b"no-cache");
    crate::h1::write_header(&mut head, b"x-request-id", b"mock-upstream-id");
    if chunked_framing {
        crate::h1::write_header(&mut head, b"transfer-encoding", b"chunked");
    } else {
        crate::h1::write_header(&mut head, b"connection", b"close");
    }
    head.extend_from_slice(b"\r\n");
    if s.write_all(head).await.0.is_err() {
        return false;
    }
    let events = stream_events(ask, id, chunks);
    for (i, ev) in events.iter().enumerate() {
        if cut_after == Some(i) {
            return false; // close without the terminating chunk
        }
        if hold_after == Some(i) {
            if !hold(s, shared, buf).await {
                let _ = shared.events.send(MockEvent::PeerClosedWhileHeld);
                return false;
            }
        } else if i > 0 && !interval.is_zero() {
            monoio::time::sleep(interval).await;
        }
        let mut out = Vec::with_capacity(ev.len() + 16);
        if chunked_framing {
            chunked::write_chunk(&mut out, ev);
        } else {
            out.extend_from_slice(ev);
        }
        if s.write_all(out).await.0.is_err() {
            let _ = shared.events.send(MockEvent::StreamAborted);
            return false;
        }
    }
    if hold_after == Some(events.len()) && !hold(s, shared, buf).await {
        let _ = shared.events.send(MockEvent::PeerClosedWhileHeld);
        return false;
    }
    if chunked_framing {
        s.write_all(chunked::LAST_CHUNK).await.0.is_ok()
    } else {
        false
    }
}

/// Waits for the gate; `false` when the peer closed the connection meanwhile.
async fn hold<S: AsyncReadRent>(s: &mut S, shared: &Shared, buf: &mut Vec<u8>) -> bool {
    wait_unless_peer_closes(s, buf, Duration::MAX, Some(&shared.gate)).await
}

/// Waits `d` (or until `gate` opens); `false` as soon as the peer closes the connection.
async fn wait_unless_peer_closes<S: AsyncReadRent>(
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
        match monoio::time::timeout(step, crate::server::read_into(s, buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
}
