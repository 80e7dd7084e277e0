//! Shared test harness: in-process gateways and mock upstreams on `127.0.0.1:0`, and a raw
//! HTTP/1.1 client over blocking std sockets so tests see exactly the bytes on the wire.
//!
//! Tests block (they are not the data plane), so the data-plane lints are off here.

#![allow(clippy::disallowed_methods, dead_code, unreachable_pub, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use smart_ai_router::bootstrap::{self, Gateway};
use smart_ai_router::config::Config;
use smart_ai_router::mock::{self, MockConfig, MockEvent, MockHandle, Recorded};

/// Generates one test per driver: `NAME_uring` and `NAME_legacy`, each calling `NAME(driver)`.
#[macro_export]
macro_rules! both_drivers {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $name() { super::$name("io_uring_or_auto") } )*
        }
        mod legacy {
            $( #[test] fn $name() { super::$name("legacy") } )*
        }
    };
}

/// The `driver` value for a test's config.
pub fn driver_value(driver: &str) -> &'static str {
    if driver == "legacy" { "legacy" } else { "auto" }
}

/// Starts a mock upstream.
pub fn mock(cfg: MockConfig) -> MockHandle {
    mock::start(MockConfig {
        record: true,
        ..cfg
    })
    .expect("mock upstream starts")
}

/// A mock serving `models`.
pub fn mock_models(models: &[&str]) -> MockHandle {
    mock(MockConfig {
        models: models.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    })
}

/// Starts a gateway from TOML (the `[server]` table gets `listen`, `driver` and `pin_workers`
/// filled in unless given; see [`control_plane_defaults`] for the rest).
pub fn gateway(driver: &str, toml: &str) -> Gateway {
    let text = test_config(driver, toml);
    let cfg = Config::parse(&text, &|_: &str| None)
        .unwrap_or_else(|e| panic!("test config is valid: {e}\n{text}"));
    let gw = bootstrap::start(cfg).expect("gateway starts");
    if driver != "legacy" && uring_available() {
        let chosen = &gw.board().driver;
        assert_eq!(
            chosen.driver,
            smart_ai_router::worker::runtime::Driver::IoUring,
            "the io_uring leg fell back to epoll on a kernel that has io_uring: {}",
            chosen.reason
        );
    }
    gw
}

/// Whether this kernel lets the test process set up an io_uring (and nothing forces the
/// legacy driver): then the `uring` leg of a test must really run on io_uring.
pub fn uring_available() -> bool {
    let forced = std::env::var("MONOIO_FORCE_LEGACY_DRIVER")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    !forced && io_uring::IoUring::new(8).is_ok() && monoio::utils::detect_uring()
}

/// The full text [`gateway`] starts from.
pub fn test_config(driver: &str, toml: &str) -> String {
    let mut text = String::new();
    if !toml.contains("[server]") {
        text.push_str("[server]\n");
        text.push_str(&server_defaults(driver));
        text.push_str(toml);
    } else {
        text.push_str(&toml.replacen(
            "[server]\n",
            &format!("[server]\n{}", server_defaults(driver)),
            1,
        ));
    }
    control_plane_defaults(&mut text);
    forward_mock_knobs(&text)
}

/// Every `[providers.NAME]` table forwards the mock's `x-mock-*` knobs (client headers beyond
/// the allow-list reach an upstream only when its provider lists them), unless the test
/// configures `forward_headers` itself.
pub fn forward_mock_knobs(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        out.push('\n');
        let t = line.trim();
        if t.starts_with("[providers.") && t.ends_with(']') && t.matches('.').count() == 1 {
            let own = lines[i + 1..]
                .iter()
                .take_while(|l| !l.trim_start().starts_with('['))
                .any(|l| l.trim_start().starts_with("forward_headers"));
            if !own {
                out.push_str("forward_headers = [\"x-mock-*\"]\n");
            }
        }
    }
    out
}

/// Sends one admin API request (`token`: the bearer token, if any).
pub fn admin(gw: &Gateway, method: &str, path: &str, token: Option<&str>, body: &str) -> Response {
    let mut c = Client::connect(gw.admin_addr().expect("admin API on"));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    c.send(req.as_bytes());
    c.read_response()
}

/// Polls `f` every 10 ms until it returns `Some`, for at most `within`.
/// Waits until every worker runs the latest published snapshot.
pub fn settled(gw: &Gateway) {
    use simd_json::prelude::*;
    eventually(
        Duration::from_secs(2),
        "every worker on the latest epoch",
        || {
            let s = admin(gw, "GET", "/admin/snapshot", None, "").json();
            let epoch = s["epoch"].as_u64()?;
            s["workers"]
                .as_array()?
                .iter()
                .all(|w| w["epoch"].as_u64() == Some(epoch))
                .then_some(())
        },
    );
}

pub fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sar-{tag}-{}-{}", std::process::id(), free_port()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Unless a test configures them: no discovery and no probes (their GETs would show up in
/// the mock's connection and request counts), and the admin API on an ephemeral port.
pub fn control_plane_defaults(text: &mut String) {
    if !text.contains("[discovery]") {
        text.push_str("\n[discovery]\nenabled = false\n");
    }
    if !text.contains("[health]") {
        text.push_str("\n[health]\nenabled = false\n");
    }
    if !text.contains("[state]") {
        // Usage records and caches go to a fresh directory, never the user's home.
        let dir = temp_dir("state");
        text.push_str(&format!("\n[state]\ndir = \"{}\"\n", dir.display()));
    }
    if !text.contains("[admin]") {
        text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    }
}

fn server_defaults(driver: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ndriver = \"{}\"\npin_workers = false\n",
        driver_value(driver)
    )
}

/// A one-channel config on `mock`.
pub fn one_channel(mock: SocketAddr, models: &[&str]) -> String {
    format!(
        r#"
[providers.up]
kind = "openai"
base_url = "http://{mock}/v1"

[[channels]]
id = "up-1"
provider = "up"
api_key = "sk-channel"
models = [{}]
"#,
        models
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> simd_json::OwnedValue {
        let mut b = self.body.clone();
        simd_json::to_owned_value(&mut b)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", self.text()))
    }
    /// The OpenAI error code.
    pub fn error_code(&self) -> String {
        use simd_json::prelude::*;
        let v = self.json();
        v.get("error")
            .and_then(|e| e.get("code"))
            .and_then(|c| c.as_str())
            .unwrap_or_else(|| panic!("error body: {}", self.text()))
            .to_string()
    }
}

/// A raw HTTP/1.1 client connection.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to gateway");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write request");
    }

    /// Sends a POST with a JSON body.
    pub fn post(&mut self, path: &str, extra_headers: &[(&str, &str)], body: &str) -> Response {
        self.send(&post_bytes(path, extra_headers, body));
        self.read_response()
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes());
        self.read_response()
    }

    /// Reads more bytes; `false` at EOF.
    pub fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 16384];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read from gateway failed: {e}"),
            }
        }
    }

    /// True when the server closed the connection (EOF with nothing buffered).
    pub fn is_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut tmp = [0u8; 1];
        loop {
            match self.stream.read(&mut tmp) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return matches!(r, Ok(0) | Err(_)),
            }
        }
    }

    /// Reads a response head; returns status, headers.
    pub fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap();
                let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
                let headers = lines
                    .map(|l| {
                        let (n, v) = l.split_once(':').expect("header line");
                        (n.trim().to_ascii_lowercase(), v.trim().to_string())
                    })
                    .collect();
                return (status, headers);
            }
            assert!(
                self.fill(),
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Reads one chunk of a chunked body; `None` at the last chunk.
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(line_end) = find(&self.buf, b"\r\n") {
                let size = usize::from_str_radix(
                    std::str::from_utf8(&self.buf[..line_end])
                        .unwrap()
                        .split(';')
                        .next()
                        .unwrap()
                        .trim(),
                    16,
                )
                .expect("chunk size");
                if size == 0 {
                    while find(&self.buf, b"\r\n\r\n").is_none() {
                        assert!(self.fill(), "EOF in chunked trailer");
                    }
                    let end = find(&self.buf, b"\r\n\r\n").unwrap();
                    self.buf.drain(..end + 4);
                    return None;
                }
                while self.buf.len() < line_end + 2 + size + 2 {
                    assert!(self.fill(), "EOF inside a chunk");
                }
                let data = self.buf[line_end + 2..line_end + 2 + size].to_vec();
                self.buf.drain(..line_end + 2 + size + 2);
                return Some(data);
            }
            assert!(self.fill(), "EOF before a chunk");
        }
    }

    /// Reads a whole response (Content-Length, chunked, or until close).
    pub fn read_response(&mut self) -> Response {
        let (status, headers) = self.read_head();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let mut b = Vec::new();
            while let Some(c) = self.read_chunk() {
                b.extend_from_slice(&c);
            }
            b
        } else if let Some(cl) = get("content-length") {
            let n: usize = cl.parse().unwrap();
            while self.buf.len() < n {
                assert!(self.fill(), "EOF inside the body");
            }
            self.buf.drain(..n).collect()
        } else {
            while self.fill() {}
            std::mem::take(&mut self.buf)
        };
        Response {
            status,
            headers,
            body,
        }
    }
}

pub fn post_bytes(path: &str, extra_headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in extra_headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A minimal chat body.
pub fn chat_body(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hello"}}],"stream":{stream}}}"#
    )
}

/// Waits (up to `within`) for a mock event matching `pred`.
pub fn wait_event(
    m: &MockHandle,
    within: Duration,
    pred: impl Fn(&MockEvent) -> bool,
) -> Option<MockEvent> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match m.events().recv_timeout(left) {
            Ok(e) if pred(&e) => return Some(e),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Every event the mock recorded so far (drains them).
pub fn drain(m: &MockHandle) -> Vec<MockEvent> {
    m.events().try_iter().collect()
}

/// The requests among `events`.
pub fn requests(events: &[MockEvent]) -> Vec<&Recorded> {
    events
        .iter()
        .filter_map(|e| match e {
            MockEvent::Request(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// How many connections the mock accepted among `events`.
pub fn connections(events: &[MockEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, MockEvent::Connected))
        .count()
}

/// Splits an SSE body into `data:` payloads.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|ev| {
            ev.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .collect()
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
