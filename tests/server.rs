//! The downstream HTTP/1.1 server's limits and error answers, on both drivers: every violation
//! gets the right status with an OpenAI-shaped body, and nothing hangs.

#![allow(clippy::disallowed_methods)] // tests block on sockets

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use simd_json::prelude::*;

both_drivers!(
    oversized_heads_are_431,
    too_many_headers_are_431,
    oversized_bodies_are_413_even_before_100_continue,
    slow_heads_get_408,
    slow_bodies_get_408,
    idle_keep_alive_connections_are_closed,
    connections_over_the_worker_cap_get_503,
    garbage_gets_400_and_a_closed_connection,
    smuggling_shapes_get_400,
    unknown_paths_are_404_and_wrong_methods_405,
    bad_bodies_get_precise_400s,
    health_root_and_models_answer,
    cors_preflight_and_headers_follow_the_allow_list,
);

fn gw_with(driver: &str, server: &str) -> smart_ai_router::bootstrap::Gateway {
    let m = mock_models(&["m"]);
    let cfg = format!("[server]\n{server}\n{}", one_channel(m.addr(), &["m"]));
    // the mock lives as long as the test process; the gateway only needs its address
    std::mem::forget(m);
    gateway(driver, &cfg)
}

fn assert_openai_error(r: &Response, status: u16) {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.text()
    );
    assert!(v["error"]["type"].as_str().is_some());
    assert_eq!(r.header("content-type"), Some("application/json"));
}

fn oversized_heads_are_431(driver: &str) {
    let gw = gw_with(driver, "max_header_bytes = \"1KiB\"");
    let mut c = Client::connect(gw.local_addr());
    let big = "a".repeat(2000);
    c.send(format!("GET /health HTTP/1.1\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let r = c.read_response();
    assert_openai_error(&r, 431);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
}

fn too_many_headers_are_431(driver: &str) {
    let gw = gw_with(driver, "max_headers = 8");
    let mut c = Client::connect(gw.local_addr());
    let mut req = "GET /health HTTP/1.1\r\n".to_string();
    for i in 0..20 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    c.send(req.as_bytes());
    assert_openai_error(&c.read_response(), 431);
    // eight headers are fine
    let mut c = Client::connect(gw.local_addr());
    c.send(b"GET /health HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
}

fn oversized_bodies_are_413_even_before_100_continue(driver: &str) {
    let gw = gw_with(driver, "max_body = \"1KiB\"");
    let mut c = Client::connect(gw.local_addr());
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read_response();
    assert_openai_error(&r, 413);
    assert_eq!(r.error_code(), "request_too_large");
    // chunked bodies are held to the same limit
    let mut c = Client::connect(gw.local_addr());
    let chunk = "x".repeat(800);
    c.send(format!("POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n").as_bytes());
    assert_openai_error(&c.read_response(), 413);
}

fn slow_heads_get_408(driver: &str) {
    let gw = gw_with(driver, "header_timeout = \"200ms\"");
    let mut c = Client::connect(gw.local_addr());
    c.send(b"GET /health HTTP/1.1\r\nX-Slow: ");
    let started = Instant::now();
    let r = c.read_response();
    assert_openai_error(&r, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(c.is_closed());
}

fn slow_bodies_get_408(driver: &str) {
    let gw = gw_with(driver, "body_timeout = \"200ms\"");
    let mut c = Client::connect(gw.local_addr());
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"model\":");
    assert_openai_error(&c.read_response(), 408);
}

fn idle_keep_alive_connections_are_closed(driver: &str) {
    let gw = gw_with(driver, "idle_timeout = \"200ms\"");
    let mut c = Client::connect(gw.local_addr());
    assert_eq!(c.get("/health").status, 200);
    let started = Instant::now();
    assert!(c.is_closed(), "the idle connection is closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

fn connections_over_the_worker_cap_get_503(driver: &str) {
    let gw = gw_with(driver, "workers = 1\nmax_connections = 2");
    let mut a = Client::connect(gw.local_addr());
    let mut b = Client::connect(gw.local_addr());
    assert_eq!(a.get("/health").status, 200);
    assert_eq!(b.get("/health").status, 200);
    let mut c = Client::connect(gw.local_addr());
    let r = c.read_response();
    assert_openai_error(&r, 503);
    assert!(c.is_closed());
    drop(a);
    // once a slot frees, new connections are served again
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = Client::connect(gw.local_addr());
        d.send(b"GET /health HTTP/1.1\r\n\r\n");
        if d.read_response().status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot is reused");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.get("/").status, 200);
}

fn garbage_gets_400_and_a_closed_connection(driver: &str) {
    let gw = gw_with(driver, "");
    for junk in [
        &b"\x16\x03\x01\x00\xa5\x01\x00"[..],
        b"hello there\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
    ] {
        let mut c = Client::connect(gw.local_addr());
        c.send(junk);
        let r = c.read_response();
        assert_openai_error(&r, 400);
        assert!(c.is_closed());
    }
    // a client that sends nothing and leaves does not disturb anything
    drop(Client::connect(gw.local_addr()));
    assert_eq!(Client::connect(gw.local_addr()).get("/health").status, 200);
}

fn smuggling_shapes_get_400(driver: &str) {
    let gw = gw_with(driver, "");
    for req in [
        "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let mut c = Client::connect(gw.local_addr());
        c.send(req.as_bytes());
        assert_openai_error(&c.read_response(), 400);
    }
}

fn unknown_paths_are_404_and_wrong_methods_405(driver: &str) {
    let gw = gw_with(driver, "");
    let mut c = Client::connect(gw.local_addr());
    let r = c.get("/v1/nope");
    assert_openai_error(&r, 404);
    assert_eq!(r.error_code(), "unknown_url");
    let r = c.get("/v1/chat/completions");
    assert_openai_error(&r, 405);
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    c.send(b"DELETE /v1/models HTTP/1.1\r\n\r\n");
    assert_openai_error(&c.read_response(), 405);
    // the connection survives client errors
    assert_eq!(c.get("/health").status, 200);
}

fn bad_bodies_get_precise_400s(driver: &str) {
    let gw = gw_with(driver, "");
    let mut c = Client::connect(gw.local_addr());
    for (body, code) in [
        ("{bad", "invalid_json"),
        ("[1]", "invalid_body"),
        ("{\"messages\":[]}", "missing_model"),
        ("{\"model\":42}", "invalid_model"),
        ("", "empty_body"),
    ] {
        let r = c.post("/v1/chat/completions", &[], body);
        assert_openai_error(&r, 400);
        assert_eq!(r.error_code(), code, "{body}");
    }
}

fn health_root_and_models_answer(driver: &str) {
    let m = mock_models(&["a"]);
    let cfg = format!(
        r#"[server]
workers = 2
[providers.p]
base_url = "http://{0}/v1"
[providers.q]
base_url = "http://{0}/v1"
[[channels]]
id = "c1"
provider = "p"
models = ["openai/gpt-4o", "shared"]
[[channels]]
id = "c2"
provider = "q"
models = ["shared", "only-q"]
[[channels]]
id = "off"
provider = "q"
enabled = false
models = ["hidden"]
"#,
        m.addr()
    );
    let gw = gateway(driver, &cfg);
    let mut c = Client::connect(gw.local_addr());
    // /health reports the driver actually used
    let deadline = Instant::now() + Duration::from_secs(5);
    let h = loop {
        let r = c.get("/health");
        if r.status == 200 {
            break r.json();
        }
        assert!(Instant::now() < deadline, "health turns ok");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(h["status"].as_str(), Some("ok"));
    assert_eq!(h["workers"].as_u64(), Some(2));
    let want_driver = if driver == "legacy" {
        "legacy"
    } else {
        gw.board().driver.driver.as_str()
    };
    assert_eq!(h["driver"].as_str(), Some(want_driver));
    assert!(h["epoch"].as_u64().unwrap() >= 1);
    assert_eq!(h["channels"].as_u64(), Some(3));
    let r = c.get("/");
    assert_eq!(r.json()["name"].as_str(), Some("smart-ai-router"));
    let models = c.get("/v1/models").json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["openai/gpt-4o", "shared", "only-q"],
        "de-duplicated, disabled channels hidden"
    );
    assert_eq!(models["data"][2]["owned_by"].as_str(), Some("q"));
    let one = c.get("/v1/models/openai/gpt-4o");
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["id"].as_str(), Some("openai/gpt-4o"));
    assert_eq!(c.get("/v1/models/openai%2Fgpt-4o").status, 200);
    assert_openai_error(&c.get("/v1/models/hidden"), 404);
    // a model only a disabled channel serves: 503 naming why
    let r = c.post("/v1/chat/completions", &[], &chat_body("hidden", false));
    assert_openai_error(&r, 503);
    assert!(r.text().contains("off/hidden disabled"), "{}", r.text());
    // HEAD gets the head only
    c.send(b"HEAD /v1/models HTTP/1.1\r\n\r\n");
    let (status, headers) = c.read_head();
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "content-length" && v != "0")
    );
    assert_eq!(
        c.get("/health").status,
        200,
        "no body bytes were sent for HEAD"
    );
}

fn cors_preflight_and_headers_follow_the_allow_list(driver: &str) {
    let gw = gw_with(driver, "cors_origins = [\"https://app.example\"]");
    let mut c = Client::connect(gw.local_addr());
    c.send(b"OPTIONS /v1/chat/completions HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        r.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    c.send(b"GET /health HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n");
    let r = c.read_response();
    assert!(r.header("access-control-allow-origin").is_none());
    c.send(b"GET /health HTTP/1.1\r\nOrigin: https://app.example\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("vary"), Some("origin"));
}

#[test]
fn a_client_that_sends_half_a_request_and_leaves_frees_its_slot() {
    let gw = gw_with("auto", "workers = 1\nmax_connections = 1");
    {
        let mut c = Client::connect(gw.local_addr());
        c.send(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::connect(gw.local_addr());
        c.send(b"GET /health HTTP/1.1\r\n\r\n");
        let mut first = [0u8; 12];
        let _ = c.stream.read(&mut first);
        if &first[..12] == b"HTTP/1.1 200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned connection's slot was released"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Request-forgery defences: the upstream request is the gateway's own head (credentials,
/// host and framing from the channel), so a client's hop-by-hop headers, `Host` (the test
/// client sends `Host: gw`), credentials and framing never reach the provider, and a client
/// `x-request-id` that could inject anything into a header is replaced.
#[test]
fn client_headers_neither_reach_the_upstream_nor_steer_routing() {
    let m = mock(smart_ai_router::mock::MockConfig::default());
    let gw = gateway("io_uring_or_auto", &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1/chat/completions",
        &[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=999"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("authorization", "Bearer sk-client-key"),
            ("x-request-id", "a b\tc"),
        ],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("x-request-id").expect("an id");
    assert!(
        id.starts_with("req_") && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "an unsafe client id is replaced: {id}"
    );
    let events = drain(&m);
    let up = requests(&events);
    assert_eq!(up.len(), 1);
    let names: Vec<String> = up[0]
        .headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    for h in [
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "upgrade",
        "te",
    ] {
        assert!(!names.contains(&h.to_string()), "{h} forwarded: {names:?}");
    }
    let value = |n: &str| {
        up[0]
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        value("host"),
        Some(m.addr().to_string()),
        "the channel's host"
    );
    assert_ne!(
        value("authorization").as_deref(),
        Some("Bearer sk-client-key"),
        "the channel's key, never the client's"
    );
    // A safe client id is kept and echoed.
    let r = c.post(
        "/v1/chat/completions",
        &[("x-request-id", "trace-42.a:b")],
        &chat_body("m", false),
    );
    assert_eq!(r.header("x-request-id"), Some("trace-42.a:b"));
}
