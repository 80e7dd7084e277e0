//! What a hostile or careless client cannot do, on both drivers: make the gateway read (or
//! `100 Continue`) a body before its key is checked, grow the gateway's memory with uploads it
//! will refuse, or push a worker past `server.max_buffered` (new requests then get 503
//! `overloaded` with `Retry-After: 1` while the ones in flight finish), or lock operators out
//! of the admin API with idle connections.

#![allow(clippy::disallowed_methods)] // tests block on sockets and threads

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::MockConfig;
use smart_ai_router::secret::{digest, hex};

both_drivers!(
    a_keyless_upload_is_refused_before_its_body,
    a_model_outside_the_allowance_is_refused_on_a_gemini_head,
    unauthenticated_uploads_do_not_grow_memory,
    over_max_buffered_new_requests_get_503_until_the_work_in_flight_ends,
    the_admin_api_answers_with_hundreds_of_idle_connections_open,
);

const UPLOAD: usize = 32 << 20;

fn keyed(driver: &str, server: &str) -> smart_ai_router::bootstrap::Gateway {
    let m = mock(MockConfig::default());
    let text = format!(
        "[server]\n{server}\n{}\n[[channels]]\nid = \"free-1\"\nprovider = \"up\"\napi_key = \"k\"\n\
         models = [\"cheap\"]\ntags = [\"free\"]\n\n\
         [[auth.keys]]\nname = \"team\"\nsha256 = \"{}\"\n\n\
         [[auth.keys]]\nname = \"free-only\"\nsha256 = \"{}\"\nmodels = [\"tag:free\"]\n",
        one_channel(m.addr(), &["m"]).trim_end(),
        hex(&digest(b"sk-team")),
        hex(&digest(b"sk-free")),
    );
    std::mem::forget(m);
    gateway(driver, &text)
}

/// Reads one whole response (its head and `Content-Length` body), or what arrived before EOF
/// or `within`.
fn read_for(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !complete(&got) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    got
}

/// Whether `got` is a whole `100 Continue`, or a response head and its whole
/// `Content-Length` body.
fn complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    if text == "HTTP/1.1 100 Continue\r\n\r\n" {
        return true;
    }
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let len = text[..end]
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    text.len() >= end + 4 + len
}

fn a_keyless_upload_is_refused_before_its_body(driver: &str) {
    let gw = keyed(driver, "");
    // With `Expect: 100-continue`: the answer is the 401, never a `100 Continue`.
    let mut s = TcpStream::connect(gw.local_addr()).unwrap();
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
             Content-Length: {UPLOAD}\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let got = String::from_utf8_lossy(&read_for(&mut s, Duration::from_secs(5))).into_owned();
    assert!(got.starts_with("HTTP/1.1 401 "), "{got}");
    assert!(!got.contains("100 Continue"), "{got}");
    assert!(got.contains("invalid_api_key"), "{got}");

    // Without it: the 401 arrives while the body is still coming, and the connection closes.
    let mut s = TcpStream::connect(gw.local_addr()).unwrap();
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-wrong\r\n\
             Content-Length: {UPLOAD}\r\n\r\n{{\"model\":\"m\""
        )
        .as_bytes(),
    )
    .unwrap();
    let got = String::from_utf8_lossy(&read_for(&mut s, Duration::from_secs(5))).into_owned();
    assert!(got.starts_with("HTTP/1.1 401 "), "{got}");
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );

    // A valid key with `Expect: 100-continue` does get its `100 Continue`.
    let mut s = TcpStream::connect(gw.local_addr()).unwrap();
    let body = chat_body("m", false);
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-team\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let got = read_for(&mut s, Duration::from_secs(5));
    assert!(got.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"), "{got:?}");
    s.write_all(body.as_bytes()).unwrap();
    let got = String::from_utf8_lossy(&read_for(&mut s, Duration::from_secs(5))).into_owned();
    assert!(got.starts_with("HTTP/1.1 200 "), "{got}");

    // A refusal without a body keeps the connection open for the next request.
    let mut c = Client::connect(gw.local_addr());
    assert_eq!(c.get("/v1/models").status, 401);
    assert_eq!(c.get("/health").status, 200);
}

fn a_model_outside_the_allowance_is_refused_on_a_gemini_head(driver: &str) {
    let gw = keyed(driver, "");
    let mut s = TcpStream::connect(gw.local_addr()).unwrap();
    s.write_all(
        format!(
            "POST /v1beta/models/m:generateContent HTTP/1.1\r\nHost: gw\r\nx-goog-api-key: sk-free\r\n\
             Content-Length: {UPLOAD}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let got = String::from_utf8_lossy(&read_for(&mut s, Duration::from_secs(5))).into_owned();
    assert!(got.starts_with("HTTP/1.1 403 "), "{got}");
    assert!(got.contains("PERMISSION_DENIED"), "Gemini-shaped: {got}");
    // Its allowed model is served.
    let gem = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1beta/models/cheap:generateContent",
        &[("x-goog-api-key", "sk-free")],
        gem,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Resident set size of this process (gateway, mock and test threads), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

/// 40 clients start 32 MiB uploads without a valid key; returns the peak RSS growth seen.
fn upload_without_keys(addr: SocketAddr) -> u64 {
    let before = rss();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let clients: Vec<_> = (0..40)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
                let key = if i % 2 == 0 { "" } else { "Authorization: Bearer sk-bad\r\n" };
                let head = format!(
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n{key}Content-Length: {UPLOAD}\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..UPLOAD / chunk.len() {
                    if s.write_all(&chunk).is_err() {
                        return; // refused and closed: what we want
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    peak.load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before)
}

fn unauthenticated_uploads_do_not_grow_memory(driver: &str) {
    let gw = keyed(driver, "");
    let grew = upload_without_keys(gw.local_addr());
    // 40 × 32 MiB would be 1.25 GiB if the bodies were read; refused on their heads, what
    // remains is socket buffers and the 256 KiB each closing connection drains.
    assert!(
        grew < 96 << 20,
        "RSS grew by {} MiB under 40 unauthenticated 32 MiB uploads",
        grew >> 20
    );
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-team")],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 200, "still serving: {}", r.text());
}

/// A valid chat body of about `n` bytes.
fn padded_chat(n: usize) -> String {
    let pad = "x".repeat(n.saturating_sub(80));
    format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{pad}"}}]}}"#)
}

fn over_max_buffered_new_requests_get_503_until_the_work_in_flight_ends(driver: &str) {
    let m = mock(MockConfig::default());
    let gw = gateway(
        driver,
        &format!(
            "[server]\nworkers = 1\nmax_buffered = \"8MiB\"\n{}",
            one_channel(m.addr(), &["m"])
        ),
    );
    // A 3 MiB upload in progress holds 6 MiB (the body as received and as forwarded).
    let body = padded_chat(3 << 20);
    let mut slow = TcpStream::connect(gw.local_addr()).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(&body.as_bytes()[..1024]).unwrap();
    // Another 3 MiB request does not fit next to it: 503 overloaded, Retry-After: 1, answered
    // on its head (its body is never read: a client writing all of it could be reset first).
    let got = eventually(Duration::from_secs(5), "the second upload refused", || {
        let mut s = TcpStream::connect(gw.local_addr()).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let got = String::from_utf8_lossy(&read_for(&mut s, Duration::from_secs(2))).into_owned();
        got.starts_with("HTTP/1.1 503 ").then_some(got)
    });
    assert!(got.contains("\"overloaded\""), "{got}");
    assert!(
        got.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{got}"
    );
    // A small one still fits.
    let mut c = Client::connect(gw.local_addr());
    assert_eq!(
        c.post("/v1/chat/completions", &[], &chat_body("m", false))
            .status,
        200
    );
    // The request in flight finishes, and then the large one is served again.
    slow.write_all(&body.as_bytes()[1024..]).unwrap();
    let got = String::from_utf8_lossy(&read_for(&mut slow, Duration::from_secs(10))).into_owned();
    assert!(
        got.starts_with("HTTP/1.1 200 "),
        "{}",
        &got[..got.len().min(300)]
    );
    let r = eventually(Duration::from_secs(5), "room again", || {
        let mut c = Client::connect(gw.local_addr());
        let r = c.post("/v1/chat/completions", &[], &padded_chat(3 << 20));
        (r.status == 200).then_some(r)
    });
    assert!(r.json()["choices"].as_array().is_some());
}

/// A connection to `to` from the loopback address `127.0.0.{from}`.
fn connect_from(from: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::from(([127, 0, 0, from], 0)).into())?;
    s.connect(&to.into())?;
    Ok(s.into())
}

fn the_admin_api_answers_with_hundreds_of_idle_connections_open(driver: &str) {
    const TOKEN: &str = "admin-token-0123456789abcdef";
    let m = mock(MockConfig::default());
    let gw = gateway(
        driver,
        &format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n",
            one_channel(m.addr(), &["m"])
        ),
    );
    let addr = gw.admin_addr().expect("admin on");
    let mut idle = Vec::new();
    // 200 peers from 50 source addresses: half silent, half stuck in the middle of a head.
    let open_idle = |idle: &mut Vec<TcpStream>| {
        for i in 0..200u16 {
            if let Ok(mut s) = connect_from(2 + (i % 50) as u8, addr) {
                if i % 2 == 1 {
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: adm");
                }
                idle.push(s);
            }
        }
    };
    open_idle(&mut idle);
    for round in 0..10 {
        let scheme = if round % 2 == 0 { "Bearer" } else { "bearer" };
        let mut c = Client::connect(addr);
        c.send(
            format!("GET /metrics HTTP/1.1\r\nHost: a\r\nAuthorization: {scheme} {TOKEN}\r\n\r\n")
                .as_bytes(),
        );
        let r = c.read_response();
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert!(r.text().contains("smart_router_build_info"));
        // The crowd comes back, as a client that reconnects would.
        idle.clear();
        open_idle(&mut idle);
    }
    // A wrong token is still refused, at once.
    let r = admin(&gw, "GET", "/metrics", Some("not-the-token-at-all"), "");
    assert_eq!(r.status, 401);
}
